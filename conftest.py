# Registers the labkit pytest plugin for every test in the repository.
pytest_plugins = ["labkit.plugin"]
