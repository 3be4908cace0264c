"""Few-shot suggestions for categories the model does not know yet (created by people).

Why: a new category has no output in the trained head until the next retrain. Its confirmed
examples already say what it looks like: their mean feature direction (the prototype) is a
nearest-class-mean classifier that works from a handful of images. After ``MIN_EXAMPLES``
confirmed images, an image at least as close to the prototype as most members are
(the ``MEMBER_QUANTILE`` of the members' leave-one-out cosines) gets the category offered among its
candidates on the review page.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from semcat.catalog.similar import _normalise as _unit

__all__ = ["MEMBER_QUANTILE", "MIN_EXAMPLES", "prototype", "suggest"]

MIN_EXAMPLES = 5
"""Confirmed examples (with stored features) a new category needs before it is suggested."""
MEMBER_QUANTILE = 0.2
"""An image is suggested when its cosine to the prototype reaches this quantile of the members'."""
_MAX_EXAMPLES = 500



def prototype(members: np.ndarray) -> tuple[np.ndarray, float]:
    """(unit mean direction, cosine threshold) of a category's member feature vectors.

    The threshold is the ``MEMBER_QUANTILE`` of each member's cosine to the prototype of the
    *other* members (leave-one-out): how close a new member is, not one already averaged in.
    """
    u = _unit(members)
    total = u.sum(axis=0)
    loo = np.einsum("ij,ij->i", u, _unit(total[None, :] - u))
    return _unit(total), float(np.quantile(loo, MEMBER_QUANTILE))


def suggest(cat: Any, sha256: str, categories: Iterable[str]) -> list[str]:
    """The created ``categories`` whose prototype this catalogued image matches, closest first
    (empty when the image has no stored features or no category has enough examples)."""
    names = list(categories)
    if not names:
        return []
    _, own = cat.features([sha256])
    if not len(own):
        return []
    hits = []
    for name in names:
        shas = [r.sha256 for r in cat.search(category=name, confirmed=True, limit=_MAX_EXAMPLES) if r.sha256 != sha256]
        if len(shas) < MIN_EXAMPLES:
            continue
        _, members = cat.features(shas)
        if len(members) < MIN_EXAMPLES or members.shape[1] != own.shape[1]:
            continue
        proto, threshold = prototype(members)
        score = float(_unit(own[0]) @ proto)
        if score >= threshold:
            hits.append((score, name))
    return [name for _, name in sorted(hits, reverse=True)]
