"""Offline by default: Hugging Face libraries never go to the hub unless LABKIT_ONLINE=1.

Without these variables a hub id retries for about a minute before failing; with them it fails at once with a
clear error, and everything the labs load comes from local files (see labkit.assets).
"""
from __future__ import annotations

import os

OFFLINE_VARS = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}


def online_allowed() -> bool:
    return os.environ.get("LABKIT_ONLINE") == "1"


def set_offline_env() -> None:
    if online_allowed():
        return
    for key, value in OFFLINE_VARS.items():
        os.environ.setdefault(key, value)
