"""Seeds of the zip and pickle fuzz targets (tests/fuzz/corpus/{zip,pickle}/seed_*), taken from the
checkpoint fixtures in tests/data/ckpt (tools/make_ckpt_fixtures.py). Standard library only:
    python3 tests/fuzz/make_ckpt_seeds.py
zip: every .bin fixture as it is. pickle: each zip fixture's data.pkl (mode bytes 0x00: the
unpickler alone, 0x80: inside a torch zip built by the target), and each legacy fixture's
state-dict pickle + key list + storages (mode 0xc0: after the legacy header pickles)."""
import glob
import os
import pickletools
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
CK = os.path.join(HERE, "..", "data", "ckpt")


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data)


def main():
    files = sorted(glob.glob(os.path.join(CK, "*", "*.bin")))
    for path in files:
        if os.path.getsize(path) > 200_000:
            continue
        name = os.path.relpath(path, CK).replace("/", "_")
        data = open(path, "rb").read()
        out("zip", name, data)
        if zipfile.is_zipfile(path):
            try:
                z = zipfile.ZipFile(path)
                pkl = [n for n in z.namelist() if n.endswith("/data.pkl")]
                if pkl:
                    p = z.read(pkl[0])
                    out("pickle", name + ".pkl", b"\x00" + p)
                    out("pickle", name + ".zip", b"\x80" + p)
            except (zipfile.BadZipFile, NotImplementedError, ValueError, RuntimeError, OSError):
                pass
        elif data[:2] == b"\x80\x02":
            # skip the magic, protocol and system-info pickles
            import io
            f = io.BytesIO(data)
            try:
                for _ in range(3):
                    for _ in pickletools.genops(f):
                        pass
                out("pickle", name + ".legacy", b"\xc0" + data[f.tell():])
            except Exception:
                pass
    print("seeds:", len(os.listdir(os.path.join(HERE, "corpus", "zip"))), "zip,",
          len(os.listdir(os.path.join(HERE, "corpus", "pickle"))), "pickle")


if __name__ == "__main__":
    main()
