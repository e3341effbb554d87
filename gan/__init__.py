"""The shared core of gan-serve: networks, checkpoints, latents, sampling, preprocessing, I/O.

Depends on torch, numpy, Pillow and safetensors only. ``training`` and ``service`` build on it;
it imports neither (checked by import-linter, see ``pyproject.toml``).
"""
