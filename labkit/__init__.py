"""labkit: the small harness behind AI Engineer Labs (scaffolds, loaders, offline assets, checks, the CLI)."""
from __future__ import annotations

import logging

from labkit.offline import set_offline_env

set_offline_env()
# torchao (imported by transformers when it is installed) registers enums with torch's pytree at import, and
# torch 2.14 logs a deprecation warning for each: noise in every lab that loads a model, not the learner's concern.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

from labkit.device import pick_device, seed_everything  # noqa: E402
from labkit.labs import ROOT, load_impl, reuse  # noqa: E402
from labkit.script import output_dir, run  # noqa: E402

__all__ = ["ROOT", "load_impl", "output_dir", "pick_device", "reuse", "run", "seed_everything"]
