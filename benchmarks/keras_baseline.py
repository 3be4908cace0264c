"""The paper's own setup as a baseline: TensorFlow Keras InceptionV3 at 299 px, files → features.

Usage: ``python benchmarks/keras_baseline.py LIST_FILE`` (one image path per line) with any Python
that has ``tensorflow-cpu``, numpy and Pillow (it needs no semcat, so it can run from a separate
virtual environment: TensorFlow and torch pin different numpy versions). Prints one line of JSON:
``{"images": N, "images_per_s": R, "tensorflow": VERSION}``. Random weights (``weights=None``):
speed does not depend on them, and nothing may be downloaded. PIL decode + bilinear resize, one
image at a time, batches of 32 through ``model.predict_on_batch``, after one warm-up batch.
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(list_file: str) -> None:
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    files = [line for line in open(list_file, encoding="utf-8").read().splitlines() if line]
    model = tf.keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg",
                                              input_shape=(299, 299, 3))

    def load(path: str) -> np.ndarray:
        img = Image.open(path).convert("RGB").resize((299, 299), Image.BILINEAR)
        return np.asarray(img, np.float32) / 127.5 - 1.0

    model.predict_on_batch(np.zeros((2, 299, 299, 3), np.float32))
    t = time.perf_counter()
    for i in range(0, len(files), 32):
        model.predict_on_batch(np.stack([load(p) for p in files[i: i + 32]]))
    rate = len(files) / (time.perf_counter() - t)
    print(json.dumps({"images": len(files), "images_per_s": rate, "tensorflow": tf.__version__}))


if __name__ == "__main__":
    main(sys.argv[1])
