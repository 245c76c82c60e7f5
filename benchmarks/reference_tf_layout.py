"""Reference timing: the published TensorFlow/Keras layer layout of PtychoPINN, on this machine.

The original TensorFlow PtychoPINN is usually run at N=64, gridsize 2, batch 16,
filters x2. This script rebuilds that generator's layer layout in Keras (encoder of two 3x3
convolutions + max-pool per level with 32s, 64s, 128s filters; two decoders of two 3x3
convolutions + 2x upsampling per level with 64s, 32s filters; a last stage that predicts the
central N/2 region from all channels and the border from four channels upsampled to N) and
times ``model.fit`` with an MSE loss on random data. There is no physics layer, so the figure
is an upper bound on the original's training speed; compare it with
``benchmarks/training_speed.py`` (full PINN: network, overlap constraint, FFTs, Poisson loss).

TensorFlow is not a dependency of this project. Run it in a separate environment:

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu
    /tmp/tfenv/bin/python benchmarks/reference_tf_layout.py --n_filters_scale 2
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def build(N: int, channels: int, s: int):
    import tensorflow as tf
    from tensorflow.keras import layers

    def conv(x, filters, activation="relu"):
        return layers.Conv2D(filters, 3, padding="same", activation=activation)(x)

    def decoder(z, activation):
        for f in (64 * s, 32 * s):
            z = layers.UpSampling2D(2)(conv(conv(z, f), f))
        centre = layers.ZeroPadding2D(N // 4)(conv(z[..., :-4], channels, activation))
        border = layers.UpSampling2D(2)(conv(conv(z[..., -4:], 32 * s), 32 * s))
        return centre + conv(border, channels, "swish")

    inputs = layers.Input((N, N, channels))
    x = inputs
    for f in (32 * s, 64 * s, 128 * s):
        x = layers.MaxPool2D(2)(conv(conv(x, f), f))
    return tf.keras.Model(inputs, [decoder(x, "sigmoid"), decoder(x, "tanh")])


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n_filters_scale", type=int, default=2)
    p.add_argument("--gridsize", type=int, default=2)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--n_groups", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    N, channels = 64, args.gridsize**2
    model = build(N, channels, args.n_filters_scale)
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.random((args.n_groups, N, N, channels), dtype=np.float32)
    y = [rng.random((args.n_groups, N, N, channels), dtype=np.float32)] * 2
    model.fit(x[:64], [t[:64] for t in y], batch_size=args.batch_size, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=2, verbose=0)
    train_rate = 2 * args.n_groups / (time.perf_counter() - start)
    start = time.perf_counter()
    model.predict(x, batch_size=64, verbose=0)
    infer_rate = args.n_groups / (time.perf_counter() - start)
    print(
        f"TensorFlow {tf.__version__}, original layout, N={N}, gridsize {args.gridsize}, "
        f"filters x{args.n_filters_scale}, batch {args.batch_size}, {args.threads} threads: "
        f"train {train_rate:.1f} groups/s (network + MSE), predict {infer_rate:.1f} groups/s"
    )


if __name__ == "__main__":
    main()
