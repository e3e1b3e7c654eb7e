"""The compiled parts: collectors/_md5lanes.c (with _md5stream.c, _md5simd.c and
_md5check.c), MD5 of many files at once in SIMD lanes (the packages check), and
collectors/_bodylist.c, the timeline's and the system walk's per-directory listing, and
collectors/_smallcopy.c (with _sha256.c), a batch's small files copied and hashed.
Optional: where no compiler exists the build goes on without them and the tool hashes
with hashlib (collectors/lanedigest.py) and lists in Python (collectors/bodywalk.py,
collectors/systemwalk.py's walk_stats) and copies small files in Python
(collectors/copybytes.py). Everything
else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "collectors._md5lanes",
            [
                "collectors/_md5lanes.c",
                "collectors/_md5stream.c",
                "collectors/_md5simd.c",
                "collectors/_md5check.c",
            ],
            depends=["collectors/_md5simd.h", "collectors/_md5stream.h"],
            extra_compile_args=["-O3", "-std=gnu11"],
            optional=True,
        ),
        Extension(
            "collectors._bodylist",
            ["collectors/_bodylist.c", "collectors/_dirents.c"],
            depends=["collectors/_dirents.h"],
            extra_compile_args=["-O2", "-std=gnu11"],
            optional=True,
        ),
        Extension(
            "collectors._smallcopy",
            ["collectors/_smallcopy.c", "collectors/_sha256.c"],
            depends=["collectors/_sha256.h"],
            extra_compile_args=["-O2", "-std=gnu11"],
            optional=True,
        ),
    ]
)
