# PyInstaller runtime hook of the kit: runs before any project module is imported.
#
# Keep the host's OpenSSL configuration and plug-ins out of the kit: the OpenSSL that
# hashlib uses reads /usr/lib/ssl/openssl.cnf at start-up, and cryptography's own copy
# looks for a config and the "legacy" provider under /opt/pyca. A config can load any
# provider module, so a planted one could change how the kit hashes and signs. Point
# both at files inside the kit, which the kit's signed sums cover.
import os
import sys

sys.dont_write_bytecode = True
os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
_base = getattr(sys, "_MEIPASS", os.path.dirname(sys.executable))
os.environ["OPENSSL_CONF"] = os.path.join(_base, "openssl.cnf")
os.environ["OPENSSL_MODULES"] = os.path.join(_base, "ossl-modules")
os.environ["OPENSSL_ENGINES"] = os.path.join(_base, "ossl-engines")
os.environ["CRYPTOGRAPHY_OPENSSL_NO_LEGACY"] = "1"
