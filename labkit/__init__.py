"""labkit: the small harness behind AI Engineer Labs (scaffolds, loaders, offline assets, checks, the CLI)."""
from __future__ import annotations

from labkit.offline import set_offline_env

set_offline_env()

from labkit.device import pick_device, seed_everything  # noqa: E402
from labkit.labs import ROOT, load_impl, reuse  # noqa: E402
from labkit.script import output_dir, run  # noqa: E402

__all__ = ["ROOT", "load_impl", "output_dir", "pick_device", "reuse", "run", "seed_everything"]
