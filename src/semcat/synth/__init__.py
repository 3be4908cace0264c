"""Procedural SEM-like images for the 10 NFFA categories, deterministic by seed.

Why: tests, demos and benchmarks need labelled SEM data that anyone can regenerate on a fresh
machine (real archives cannot be shipped). Each category builds a *height map* and a *material*
(yield) map; one shared renderer then applies what a secondary-electron detector does. Images of
one sample (one look) share magnification, contrast and variant, like shots of one specimen in a
real session. Everything is vectorised numpy + OpenCV: a 512 px image takes some tens of ms.

Layout (one job per module):

- ``_render``: the per-sample look and the SEM renderer (shading, edge brightening, noise)
- ``_shapes``: height-map drawing primitives (spheres, strands, domes, coordinate grids)
- ``categories``: one height/material generator per category
- ``nanowires``: alignment images and their ground-truth order parameter
- ``databar``: instrument data bars burnt in below the image
- ``generate``: :func:`generate_image` and :func:`blend` (in memory)
- ``metadata``: Zeiss / FEI vendor tags for written TIFFs
- ``writers``: :func:`write_dataset`, :func:`write_alignment_set`, :func:`write_blend_set`
"""
from __future__ import annotations

from semcat.synth.databar import render_databar
from semcat.synth.generate import blend, generate_image
from semcat.synth.nanowires import generate_nanowires
from semcat.synth.writers import write_alignment_set, write_blend_set, write_dataset

__all__ = [
    "blend",
    "generate_image",
    "generate_nanowires",
    "render_databar",
    "write_alignment_set",
    "write_blend_set",
    "write_dataset",
]
