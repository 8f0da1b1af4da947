#!/usr/bin/env python3
"""Offline quality measure for Fashion-MNIST samples (28x28 gray): a Frechet distance in the
feature space of a small CNN classifier trained on Fashion-MNIST, plus class coverage.

  python3 tools/fid.py train                 # train the classifier (fixed seeds, 1 thread)
  python3 tools/fid.py score x.npy           # samples: .npy, a folder of PNGs, or PNG files
  python3 tools/fid.py score out/ --json
  python3 tools/fid.py calibrate             # reference rows: real data, noise, ...

Samples: a .npy of shape (B,H,W), (B,H,W,C) or (B,C,H,W), float in [0,1] (what
`pndm-gen -o x.npy` writes) or uint8 in [0,255]; or PNG files (read with PIL, converted to
8-bit gray). C = 3 is converted to gray with PIL's luma weights (299, 587, 114)/1000; H x W
must be 28x28 or 32x32 (32 is center-cropped to 28).

The score (not Inception FID, so not comparable with published FIDs): features = the
penultimate layer (128 ReLU units) of the classifier; FD = |mu_s - mu_r|^2 + Tr(S_s + S_r -
2 (S_s S_r)^(1/2)) against the 10,000 Fashion-MNIST test images, in float64. Coverage =
histogram of predicted classes, number of classes with >= 1% of the samples, and the entropy
of that histogram in bits (log2(10) = 3.32 for a uniform spread). FD has a small-sample bias:
compare runs with the same number of samples (`calibrate` shows 1,000 vs 10,000 real images).

Needs numpy, PyTorch and safetensors (PIL only for PNG input). The classifier weights are
tools/fid_classifier.safetensors (made by `train`; metadata records accuracy and settings).
"""
import argparse
import glob
import gzip
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = "/usr/share/datasets/fashion-mnist"
WEIGHTS = os.path.join(HERE, "fid_classifier.safetensors")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MEAN, STD = 0.2860, 0.3530          # Fashion-MNIST training-set pixel mean / std (x in [0,1])
ARCH = "fmnist-cnn-v1"
FEAT_DIM = 128
COVER_MIN = 0.01                    # a class counts as covered with >= 1% of the samples


class ToolError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# Data

def load_idx(path):
    """idx3 (images, uint8 (N,H,W)) or idx1 (labels, uint8 (N,)), gzip or plain."""
    if not os.path.exists(path):
        raise ToolError(f"{path}: not found (Debian package dataset-fashion-mnist, or --data-dir)")
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ToolError(f"{path}: too short for an idx file")
    magic = int.from_bytes(data[:4], "big")
    if magic == 2051:
        n, h, w = (int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
        body, shape = data[16:], (n, h, w)
    elif magic == 2049:
        n = int.from_bytes(data[4:8], "big")
        body, shape = data[8:], (n,)
    else:
        raise ToolError(f"{path}: bad idx magic {magic}")
    if len(body) != int(np.prod(shape)):
        raise ToolError(f"{path}: expected {int(np.prod(shape))} data bytes, found {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def load_split(data_dir, split):
    """split 'train' or 't10k' -> (images uint8 (N,28,28), labels int64 (N,))."""
    x = load_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"))
    y = load_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz")).astype(np.int64)
    if x.shape[0] != y.shape[0]:
        raise ToolError(f"{data_dir}: {split} has {x.shape[0]} images but {y.shape[0]} labels")
    return x, y


def to_unit_gray(a, source):
    """Any accepted sample array -> float64 (B,28,28) in [0,1]."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        x = a.astype(np.float64) / 255.0
    elif np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise ToolError(f"{source}: contains NaN or Inf")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            print(f"warning: {source}: values span [{lo:.3g}, {hi:.3g}], expected [0,1]; clipped"
                  + (" (looks like [-1,1] data: map it with x/2+0.5 first)" if lo < -0.5 else ""),
                  file=sys.stderr)
        x = np.clip(x, 0.0, 1.0)
    else:
        raise ToolError(f"{source}: dtype {a.dtype} not supported (float in [0,1] or uint8)")
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3, 4):          # (B,H,W,C), what pndm-gen writes
            pass
        elif x.shape[1] in (1, 3, 4):         # (B,C,H,W)
            x = x.transpose(0, 2, 3, 1)
        else:
            raise ToolError(f"{source}: shape {a.shape}: cannot find a channel axis of 1, 3 or 4")
        c = x.shape[-1]
        if c == 1:
            x = x[..., 0]
        else:                                 # RGB(A) -> gray as PIL's convert('L'); alpha dropped
            x = (x[..., 0] * 299 + x[..., 1] * 587 + x[..., 2] * 114) / 1000.0
    if x.ndim != 3:
        raise ToolError(f"{source}: shape {a.shape}: expected (B,H,W), (B,H,W,C) or (B,C,H,W)")
    h, w = x.shape[1:]
    if (h, w) == (32, 32):
        x = x[:, 2:30, 2:30]
    elif (h, w) != (28, 28):
        raise ToolError(f"{source}: images are {h}x{w}; expected 28x28 or 32x32 (center-cropped)")
    if x.shape[0] == 0:
        raise ToolError(f"{source}: no images")
    return x


def load_samples(paths):
    """A .npy, a folder of PNGs, or PNG files -> float64 (B,28,28) in [0,1], and a label."""
    if len(paths) == 1 and paths[0].endswith(".npy"):
        p = paths[0]
        if not os.path.isfile(p):
            raise ToolError(f"{p}: not found")
        try:
            a = np.load(p, allow_pickle=False)
        except Exception as e:
            raise ToolError(f"{p}: not a readable .npy file ({e})") from e
        return to_unit_gray(a, p), p
    files = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(glob.glob(os.path.join(p, "*.png")) + glob.glob(os.path.join(p, "*.PNG")))
            if not found:
                raise ToolError(f"{p}: folder holds no .png files")
            files += found
        elif p.endswith(".npy"):
            raise ToolError(f"{p}: give a .npy alone, not mixed with other inputs")
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise ToolError(f"{p}: not found")
    try:
        from PIL import Image
    except ImportError as e:
        raise ToolError("reading PNG files needs PIL (python3-pil); or pass a .npy") from e
    imgs = []
    for f in files:
        try:
            with Image.open(f) as im:
                imgs.append(np.asarray(im.convert("L"), dtype=np.uint8))
        except Exception as e:
            raise ToolError(f"{f}: cannot read as an image ({e})") from e
    shapes = {i.shape for i in imgs}
    if len(shapes) != 1:
        raise ToolError(f"images differ in size: {sorted(shapes)}")
    label = paths[0] if len(paths) == 1 else f"{len(files)} files"
    return to_unit_gray(np.stack(imgs), label), label


# ----------------------------------------------------------------------------------------------
# Classifier

def build_net():
    import torch.nn as nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            # (B,1,28,28) -> (B,16,14,14) -> (B,32,7,7) -> (B,64,7,7) -> (B,128) -> (B,10)
            self.features = nn.Sequential(*block(1, 16), nn.MaxPool2d(2), *block(16, 32),
                                          nn.MaxPool2d(2), *block(32, 64), nn.Flatten(),
                                          nn.Linear(64 * 7 * 7, FEAT_DIM), nn.ReLU())
            self.drop = nn.Dropout(0.3)
            self.head = nn.Linear(FEAT_DIM, 10)

        def forward(self, x):
            f = self.features(x)               # (B,128): the penultimate features
            return self.head(self.drop(f)), f

    return Net()


def normalize(x01):
    """float (N,28,28) in [0,1] -> torch float32 (N,1,28,28), normalised as in training."""
    import torch
    return torch.from_numpy(((np.asarray(x01, np.float32) - MEAN) / STD)[:, None].copy())


def load_classifier(path=WEIGHTS):
    from safetensors.torch import load_file
    from safetensors import safe_open
    if not os.path.exists(path):
        raise ToolError(f"{path}: classifier weights not found; run `tools/fid.py train` first")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("arch") != ARCH:
        raise ToolError(f"{path}: arch {meta.get('arch')!r}, expected {ARCH!r}")
    net = build_net()
    net.load_state_dict(load_file(path))
    net.eval()
    return net, meta


def run_net(net, x01, batch=1000):
    """-> features float64 (N,128), predicted class int64 (N,)."""
    import torch
    feats, preds = [], []
    with torch.no_grad():
        for i in range(0, x01.shape[0], batch):
            logits, f = net(normalize(x01[i:i + batch]))
            feats.append(f.double().numpy())
            preds.append(logits.argmax(1).numpy())
    return np.concatenate(feats), np.concatenate(preds)


def train(args):
    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    xtr, ytr = load_split(args.data_dir, "train")
    xte, yte = load_split(args.data_dir, "t10k")
    X = normalize(xtr / 255.0)
    Y = torch.from_numpy(ytr)
    net = build_net()
    nparam = sum(p.numel() for p in net.parameters())
    print(f"{ARCH}: {nparam} parameters; {args.epochs} epochs, batch {args.batch}, "
          f"{args.threads} thread(s), seed {args.seed}", flush=True)
    steps_per_epoch = X.shape[0] // args.batch
    total = args.epochs * steps_per_epoch
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total)
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        g = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        perm = torch.randperm(X.shape[0], generator=g)
        run_loss = 0.0
        for k in range(steps_per_epoch):
            idx = perm[k * args.batch:(k + 1) * args.batch]
            xb, yb = X[idx], Y[idx]
            flip = torch.rand(xb.shape[0], generator=g) < 0.5   # the diffusion model trains
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)  # with flips too
            logits, _ = net(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += float(loss)
        net.eval()
        _, pred = run_net(net, xte / 255.0)
        acc = float((pred == yte).mean())
        print(f"epoch {epoch + 1}/{args.epochs}: loss {run_loss / steps_per_epoch:.4f} "
              f"test accuracy {acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
    secs = time.time() - t0
    meta = {"arch": ARCH, "test_accuracy": f"{acc:.4f}", "epochs": str(args.epochs),
            "batch": str(args.batch), "lr": str(args.lr), "seed": str(args.seed),
            "threads": str(args.threads), "train_seconds": f"{secs:.0f}",
            "torch": torch.__version__, "normalize": json.dumps([MEAN, STD]),
            "classes": json.dumps(CLASSES),
            "made_by": "tools/fid.py train"}
    sd = {k: v.detach().contiguous() for k, v in net.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    tmp = args.out + ".tmp"
    save_file(sd, tmp, metadata=meta)
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)
    print(f"test accuracy {acc:.4f}, training {secs:.0f} s -> {args.out} "
          f"({os.path.getsize(args.out)} bytes)")
    if acc < 0.90:
        print("warning: test accuracy below 0.90", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------------------------
# Statistics

def stats(feats):
    """features (N,D) float64 -> mean (D,), covariance (D,D) (unbiased)."""
    f = np.asarray(feats, np.float64)
    if f.shape[0] < 2:
        raise ToolError("need at least 2 samples for a covariance")
    return f.mean(0), np.cov(f, rowvar=False)


def psd_sqrt(s):
    """Symmetric PSD square root via eigen-decomposition; negative round-off eigenvalues -> 0."""
    s = (s + s.T) / 2
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, s1, mu2, s2):
    """|mu1-mu2|^2 + Tr(s1) + Tr(s2) - 2 Tr((s1 s2)^(1/2)), with
    Tr((s1 s2)^(1/2)) = Tr((r s2 r)^(1/2)), r = s1^(1/2): r s2 r is symmetric PSD, so its
    eigenvalues are real and >= 0 up to round-off (no complex sqrtm needed)."""
    r = psd_sqrt(s1)
    m = r @ s2 @ r
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(ev, 0, None)).sum())
    d = mu1 - mu2
    fd = float(d @ d + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)
    return max(fd, 0.0)


def coverage(pred):
    hist = np.bincount(pred, minlength=10)[:10]
    frac = hist / max(1, hist.sum())
    nz = frac[frac > 0]
    ent = float(-(nz * np.log2(nz)).sum())
    return {"class_counts": {c: int(n) for c, n in zip(CLASSES, hist)},
            "classes_covered": int((frac >= COVER_MIN).sum()),
            "entropy_bits": ent}


class Scorer:
    """Holds the classifier and the test-set statistics (computed once per run)."""

    def __init__(self, args):
        self.net, self.meta = load_classifier(args.weights)
        self.data_dir = args.data_dir
        self._ref = None

    def reference(self):
        if self._ref is None:
            xte, _ = load_split(self.data_dir, "t10k")
            f, _ = run_net(self.net, xte / 255.0)
            self._ref = stats(f)
        return self._ref

    def score(self, x01):
        f, pred = run_net(self.net, x01)
        mu, s = stats(f)
        mu_r, s_r = self.reference()
        out = {"n": int(x01.shape[0]), "fid": frechet_distance(mu, s, mu_r, s_r),
               "reference": "Fashion-MNIST test set (10000 images)", "feature_dim": FEAT_DIM}
        out.update(coverage(pred))
        return out


def human(r, label):
    top = sorted(r["class_counts"].items(), key=lambda kv: -kv[1])
    hist = " ".join(f"{c}:{n}" for c, n in top if n)
    return (f"{label}: n={r['n']} FD={r['fid']:.3f} classes>=1%={r['classes_covered']}/10 "
            f"entropy={r['entropy_bits']:.3f}/{math.log2(10):.3f} bits [{hist}]")


def score(args):
    import torch
    torch.set_num_threads(args.threads)
    x, label = load_samples(args.samples)
    if x.shape[0] < 2:
        raise ToolError(f"{label}: {x.shape[0]} image(s); the Frechet distance needs at least 2")
    if x.shape[0] <= FEAT_DIM:
        print(f"warning: {x.shape[0]} samples <= {FEAT_DIM} feature dimensions: the covariance is "
              "rank-deficient and FD strongly biased upward; use >= 1000 samples", file=sys.stderr)
    sc = Scorer(args)
    r = sc.score(x)
    r["samples"] = label
    r["classifier_test_accuracy"] = float(sc.meta.get("test_accuracy", "nan"))
    print(json.dumps(r, indent=1) if args.json else human(r, label))
    return 0


def box_blur3(x):
    """3x3 mean filter with edge replication, (N,H,W) -> (N,H,W)."""
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = x.shape[1:]
    return sum(p[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0


def calibrate(args):
    import torch
    torch.set_num_threads(args.threads)
    sc = Scorer(args)
    xte, _ = load_split(args.data_dir, "t10k")
    xtr, ytr = load_split(args.data_dir, "train")
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(xtr.shape[0])
    trouser = xtr[ytr == 1]
    tr10k = xtr[perm[:10000]] / 255.0
    noise = np.clip(0.5 + 0.5 * rng.standard_normal((10000, 28, 28)), 0, 1)
    rows = [("10000 test images vs themselves (sanity, expect 0)", xte / 255.0),
            ("10000 training images", tr10k),
            ("1000 training images (small-sample bias)", tr10k[:1000]),
            ("10000 training images, 3x3 box blur", box_blur3(tr10k)),
            (f"{trouser.shape[0]} training images of one class (Trouser)", trouser / 255.0),
            ("10000 Gaussian noise images clip(0.5+0.5*N(0,1), 0, 1)", noise),
            ("10000 training images, half replaced by the noise images",
             np.concatenate([tr10k[:5000], noise[:5000]]))]
    results = []
    for name, x in rows:
        r = sc.score(x)
        r["row"] = name
        results.append(r)
        if not args.json:
            print(human(r, name), flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=DATA_DIR, help="Fashion-MNIST idx files (%(default)s)")
    ap.add_argument("--weights", default=WEIGHTS, help="classifier (%(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (%(default)s)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the classifier (fixed seeds)")
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("-o", "--out", default=WEIGHTS)
    s = sub.add_parser("score", help="score samples: a .npy, a folder of PNGs, or PNG files")
    s.add_argument("samples", nargs="+")
    s.add_argument("--json", action="store_true", help="print JSON")
    c = sub.add_parser("calibrate", help="print reference rows (real images, noise)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    try:
        return {"train": train, "score": score, "calibrate": calibrate}[args.cmd](args)
    except ToolError as e:
        print(f"fid.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
