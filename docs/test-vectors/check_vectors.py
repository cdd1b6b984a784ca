#!/usr/bin/env python3
"""Independent conformance checker for the Sotto protocol test vectors
(v1.json, and v2.json of protocol version 2).

Requirements: `pip install cryptography` for v1.json; v2.json also needs
`pip install kyber-py` (a pure-Python FIPS 203 ML-KEM; its ML_KEM_768's
key_derive(d || z), _encaps_internal(ek, m) and decaps are used).

Written from the specification (docs/protocol.md) alone, without the Rust
source, so that it checks the vectors independently of the implementation.
Uses the `cryptography` package for X25519, Ed25519, HKDF-SHA256,
HMAC-SHA256 and ChaCha20-Poly1305, and hashlib for SHA-512 and SHA-256.

Usage: python3 check_vectors.py [FILE]   (default: v1.json next to this script)
A file whose "version" is 2 is checked against section 16 (protocol version
2): the v2 bundles (ML-KEM key generation from the 64-byte seed, the
FIPS 203 modulus check, both signatures), the hybrid key agreement
(encapsulation with the given m, decapsulation, HKDF), sessions with the
128-byte associated data, and the refusals with their error codes.
In a version 1 file it also checks the sealed envelopes (version 2) of the
`sealed` section,
the `devices` section (linked devices: device lists, link codes, the link
handshake), with its own strict Ed25519 point decoding, `base64` for base32 and
`cryptography` for Ed25519, HKDF and HMAC, and the `detached_bodies` section
(a body encrypted once for all devices, and the reference each session
carries), with `cryptography`'s ChaCha20-Poly1305 and hashlib's SHA-256,
the `groups` section (sender keys: distributions, group messages, one
receiver's view of them and the serialized states of section 14), and the
`group_membership` section (a group's signed changes, the states they
produce, concurrent changes and refusals, section 15), with `cryptography`
for Ed25519 and hashlib's SHA-256.
Prints one line per mismatch, ends with `conformance: N checks, M failed`
and exits non-zero when M > 0.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import struct
import sys
from collections import OrderedDict

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import constant_time, hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

# ---------------------------------------------------------------- constants
VERSION = 0x01
VERSION_V2 = 0x02
TYPE_PREKEY = 0x01
TYPE_MESSAGE = 0x02
MAX_SKIP = 1000
MAX_STORED_SKIPPED = 2000
MAX_PLAINTEXT = 16 * 1024 * 1024  # inclusive
TAG_LEN = 16
MIN_CIPHERTEXT = 256 + TAG_LEN
HEADER_LEN = 40
INFO_X3DH = b"Sotto_X3DH_v1"
INFO_RATCHET = b"Sotto_Ratchet_v1"
INFO_MESSAGE = b"Sotto_Message_v1"
SEALED_VERSION = 0x02
INFO_SEALED_SENDER = b"Sotto_Sealed_v2_sender"
INFO_SEALED_CONTENTS = b"Sotto_Sealed_v2_contents"
P = 2**255 - 19


class ProtocolError(Exception):
    pass


class Duplicate(ProtocolError):
    pass


class AuthError(ProtocolError):
    pass


# ---------------------------------------------------------------- primitives
def raw(pub) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def x25519_pub(priv: bytes) -> bytes:
    # X25519 clamps the scalar on use (RFC 7748).
    return raw(X25519PrivateKey.from_private_bytes(priv).public_key())


def dh(priv: bytes, pub: bytes) -> bytes:
    try:
        out = X25519PrivateKey.from_private_bytes(priv).exchange(
            X25519PublicKey.from_public_bytes(pub))
    except ValueError as e:  # OpenSSL refuses an all-zero result
        raise ProtocolError(f"X25519 failed: {e}") from e
    if out == bytes(32):
        raise ProtocolError("all-zero X25519 shared secret")
    return out


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def u32be(n: int) -> bytes:
    return struct.pack(">I", n)


def enc_ed(k: bytes) -> bytes:
    return b"\xed" + k


def enc_x(k: bytes) -> bytes:
    return b"\x05" + k


def clamp(k: bytes) -> bytes:
    b = bytearray(k)
    b[0] &= 248
    b[31] &= 127
    b[31] |= 64
    return bytes(b)


def ed_to_montgomery(ed_pub: bytes) -> bytes:
    """u = (1 + y) / (1 - y) mod p, y decoded from the Ed25519 encoding."""
    y = (int.from_bytes(ed_pub, "little") & ((1 << 255) - 1)) % P
    u = (1 + y) * pow((1 - y) % P, P - 2, P) % P
    return u.to_bytes(32, "little")


class Identity:
    def __init__(self, seed: bytes):
        self.seed = seed
        self.ed_priv = Ed25519PrivateKey.from_private_bytes(seed)
        self.ed_pub = raw(self.ed_priv.public_key())
        # X25519 form: clamp(SHA-512(seed)[0..32]); the clamp is also applied
        # by X25519 itself, so applying it here is harmless.
        self.x_priv = clamp(hashlib.sha512(seed).digest()[:32])
        self.x_pub = ed_to_montgomery(self.ed_pub)

    def sign(self, msg: bytes) -> bytes:
        return self.ed_priv.sign(msg)


def verify_ed(pub: bytes, sig: bytes, msg: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


# ---------------------------------------------------------------- padding
def padded_len(L: int) -> int:
    if L <= 256:
        return 256
    E = L.bit_length() - 1            # floor(log2 L)
    S = E.bit_length() - 1 + 1        # floor(log2 E) + 1
    mask = (1 << (E - S)) - 1
    return (L + mask) & ~mask


def pad(pt: bytes) -> bytes:
    if len(pt) > MAX_PLAINTEXT:
        raise ProtocolError("plaintext too long")
    target = padded_len(len(pt) + 1)
    return pt + b"\x80" + bytes(target - len(pt) - 1)


def unpad(buf: bytes) -> bytes:
    stripped = buf.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise ProtocolError("padding: missing 0x80")
    pt = stripped[:-1]
    if len(buf) != padded_len(len(pt) + 1):
        raise ProtocolError("padding: wrong padded length")
    if len(pt) > MAX_PLAINTEXT:
        raise ProtocolError("padding: plaintext too long")
    return pt


# ---------------------------------------------------------------- X3DH
def x3dh_ikm(dhs: list[bytes]) -> bytes:
    return b"\xff" * 32 + b"".join(dhs)


def x3dh_initiator(ik_a: Identity, ek_a_priv: bytes, ik_b_ed: bytes,
                   spk_b_pub: bytes, spk_sig: bytes, opk_b_pub: bytes | None):
    if not verify_ed(ik_b_ed, spk_sig, enc_x(spk_b_pub)):
        raise ProtocolError("bundle signature does not verify")
    ik_b_x = ed_to_montgomery(ik_b_ed)
    dhs = [dh(ik_a.x_priv, spk_b_pub), dh(ek_a_priv, ik_b_x), dh(ek_a_priv, spk_b_pub)]
    if opk_b_pub is not None:
        dhs.append(dh(ek_a_priv, opk_b_pub))
    sk = hkdf(bytes(32), x3dh_ikm(dhs), INFO_X3DH, 32)
    ad = enc_ed(ik_a.ed_pub) + enc_ed(ik_b_ed)
    return sk, ad


def x3dh_responder(ik_b: Identity, spk_b_priv: bytes, opk_b_priv: bytes | None,
                   ik_a_ed: bytes, ek_a_pub: bytes):
    ik_a_x = ed_to_montgomery(ik_a_ed)
    dhs = [dh(spk_b_priv, ik_a_x), dh(ik_b.x_priv, ek_a_pub), dh(spk_b_priv, ek_a_pub)]
    if opk_b_priv is not None:
        dhs.append(dh(opk_b_priv, ek_a_pub))
    sk = hkdf(bytes(32), x3dh_ikm(dhs), INFO_X3DH, 32)
    ad = enc_ed(ik_a_ed) + enc_ed(ik_b.ed_pub)
    return sk, ad


# ---------------------------------------------------------------- Double Ratchet
def kdf_rk(rk: bytes, dh_out: bytes):
    out = hkdf(rk, dh_out, INFO_RATCHET, 64)
    return out[:32], out[32:]


def kdf_ck(ck: bytes):
    return hmac_sha256(ck, b"\x02"), hmac_sha256(ck, b"\x01")


def message_key_nonce(mk: bytes):
    out = hkdf(bytes(32), mk, INFO_MESSAGE, 44)
    return out[:32], out[32:]


def make_header(pub: bytes, pn: int, n: int) -> bytes:
    return pub + u32be(pn) + u32be(n)


class ListRng:
    """Caller-supplied RNG: hands out the listed ratchet private keys in order."""

    def __init__(self, name: str, keys: list[bytes]):
        self.name, self.keys, self.pos = name, keys, 0

    def draw(self) -> bytes:
        if self.pos >= len(self.keys):
            raise ProtocolError(f"{self.name}: ratchet key list exhausted "
                                f"(draw #{self.pos + 1}, list has {len(self.keys)})")
        k = self.keys[self.pos]
        self.pos += 1
        return k


class Ratchet:
    def __init__(self):
        self.dhs_priv: bytes = b""
        self.dhs_pub: bytes = b""
        self.dhr: bytes | None = None
        self.rk: bytes = b""
        self.cks: bytes | None = None
        self.ckr: bytes | None = None
        self.ns = self.nr = self.pn = 0
        self.skipped: OrderedDict = OrderedDict()  # (dh_pub, n) -> mk
        self.ad: bytes = b""
        self.version = VERSION  # 0x02 for a version 2 session (section 16)

    @classmethod
    def init_alice(cls, sk, ad, spk_b_pub, rng: ListRng):
        s = cls()
        s.ad = ad
        s.dhs_priv = rng.draw()
        s.dhs_pub = x25519_pub(s.dhs_priv)
        s.dhr = spk_b_pub
        s.rk, s.cks = kdf_rk(sk, dh(s.dhs_priv, s.dhr))
        return s

    @classmethod
    def init_bob(cls, sk, ad, spk_b_priv):
        s = cls()
        s.ad = ad
        s.dhs_priv = spk_b_priv
        s.dhs_pub = x25519_pub(spk_b_priv)
        s.rk = sk
        return s

    def aead_ad(self, header: bytes) -> bytes:
        if self.version == VERSION_V2:
            # Section 16.5: zero bytes up to 128.
            return self.ad + bytes([VERSION_V2]) + header + bytes(21)
        return self.ad + bytes([VERSION]) + header

    def encrypt(self, pt: bytes) -> bytes:
        """Returns the encoded Message (version || type || header || ct)."""
        if self.cks is None:
            raise ProtocolError("no sending chain")
        self.cks, mk = kdf_ck(self.cks)
        header = make_header(self.dhs_pub, self.pn, self.ns)
        self.ns += 1
        key, nonce = message_key_nonce(mk)
        ct = ChaCha20Poly1305(key).encrypt(nonce, pad(pt), self.aead_ad(header))
        return bytes([self.version, TYPE_MESSAGE]) + header + ct

    def _decrypt_mk(self, mk, header, ct) -> bytes:
        key, nonce = message_key_nonce(mk)
        try:
            padded = ChaCha20Poly1305(key).decrypt(nonce, ct, self.aead_ad(header))
        except InvalidTag as e:
            raise AuthError("AEAD authentication failed") from e
        return unpad(padded)

    def _skip(self, until: int):
        if self.nr + MAX_SKIP < until:
            raise ProtocolError("MAX_SKIP exceeded")
        if self.ckr is not None:
            while self.nr < until:
                self.ckr, mk = kdf_ck(self.ckr)
                self.skipped[(self.dhr, self.nr)] = mk
                while len(self.skipped) > MAX_STORED_SKIPPED:
                    self.skipped.popitem(last=False)
                self.nr += 1

    def _dh_ratchet(self, dh_pub: bytes, rng: ListRng):
        self.pn = self.ns
        self.ns = 0
        self.nr = 0
        self.dhr = dh_pub
        self.rk, self.ckr = kdf_rk(self.rk, dh(self.dhs_priv, self.dhr))
        self.dhs_priv = rng.draw()
        self.dhs_pub = x25519_pub(self.dhs_priv)
        self.rk, self.cks = kdf_rk(self.rk, dh(self.dhs_priv, self.dhr))

    def decrypt_inplace(self, header: bytes, ct: bytes, rng: ListRng) -> bytes:
        dh_pub, pn, n = header[:32], *struct.unpack(">II", header[32:40])
        key = (dh_pub, n)
        if key in self.skipped:
            pt = self._decrypt_mk(self.skipped[key], header, ct)
            del self.skipped[key]
            return pt
        if dh_pub != self.dhr:
            # Check both MAX_SKIP bounds before doing anything (session unchanged).
            if self.ckr is not None and pn - self.nr > MAX_SKIP:
                raise ProtocolError("MAX_SKIP exceeded (previous chain)")
            if n > MAX_SKIP:
                raise ProtocolError("MAX_SKIP exceeded (new chain)")
            self._skip(pn)
            self._dh_ratchet(dh_pub, rng)
        elif n < self.nr:
            raise Duplicate("already used message index")
        self._skip(n)
        self.ckr, mk = kdf_ck(self.ckr)
        self.nr += 1
        return self._decrypt_mk(mk, header, ct)


# ---------------------------------------------------------------- wire format
def parse_message(buf: bytes, version: int = VERSION):
    if len(buf) < 2 + HEADER_LEN:
        raise ProtocolError("Message too short")
    if buf[0] != version:
        raise ProtocolError("Message: wrong version")
    if buf[1] != TYPE_MESSAGE:
        raise ProtocolError("Message: wrong type")
    header, ct = buf[2:2 + HEADER_LEN], buf[2 + HEADER_LEN:]
    if len(ct) < MIN_CIPHERTEXT:
        raise ProtocolError("ciphertext shorter than 272 bytes")
    return header, ct


def encode_prekey(ik_a_ed, ek_a_pub, spk_id, opk_id, message: bytes) -> bytes:
    out = bytes([VERSION, TYPE_PREKEY]) + ik_a_ed + ek_a_pub + u32be(spk_id)
    if opk_id is None:
        out += b"\x00"
    else:
        out += b"\x01" + u32be(opk_id)
    return out + message


def parse_prekey(buf: bytes):
    if len(buf) < 2 + 32 + 32 + 4 + 1:
        raise ProtocolError("PreKeyMessage too short")
    if buf[0] != VERSION:
        raise ProtocolError("PreKeyMessage: wrong version")
    if buf[1] != TYPE_PREKEY:
        raise ProtocolError("PreKeyMessage: wrong type")
    ik_a, ek_a = buf[2:34], buf[34:66]
    (spk_id,) = struct.unpack(">I", buf[66:70])
    flag = buf[70]
    pos = 71
    if flag == 0:
        opk_id = None
    elif flag == 1:
        if len(buf) < pos + 4:
            raise ProtocolError("PreKeyMessage too short")
        (opk_id,) = struct.unpack(">I", buf[pos:pos + 4])
        pos += 4
    else:
        raise ProtocolError("PreKeyMessage: unknown has_opk flag")
    header, ct = parse_message(buf[pos:])
    return ik_a, ek_a, spk_id, opk_id, header, ct


# ---------------------------------------------------------------- parties
class Alice:
    def __init__(self, ik: Identity, ek_priv: bytes, bundle: dict, rng: ListRng):
        self.ik = ik
        self.rng = rng
        self.ek_priv = ek_priv
        self.ek_pub = x25519_pub(ek_priv)
        self.spk_id = bundle["spk_id"]
        self.opk_id = bundle["opk_id"]
        sk, ad = x3dh_initiator(ik, ek_priv, bundle["ik"], bundle["spk_pub"],
                                bundle["sig"], bundle["opk_pub"])
        self.session = Ratchet.init_alice(sk, ad, bundle["spk_pub"], rng)
        self.got_reply = False

    def send(self, pt: bytes) -> bytes:
        msg = self.session.encrypt(pt)
        if not self.got_reply:
            return encode_prekey(self.ik.ed_pub, self.ek_pub, self.spk_id, self.opk_id, msg)
        return msg

    def receive(self, wire: bytes) -> bytes:
        if len(wire) >= 2 and wire[1] == TYPE_PREKEY:
            raise ProtocolError("Alice received a PreKeyMessage (no responder role here)")
        header, ct = parse_message(wire)
        work = copy.deepcopy(self.session)
        pt = work.decrypt_inplace(header, ct, self.rng)
        self.session = work
        self.got_reply = True
        return pt


class Bob:
    def __init__(self, ik: Identity, spk_id, spk_priv, opk_id, opk_priv, rng: ListRng):
        self.ik = ik
        self.rng = rng
        self.spk_id, self.spk_priv = spk_id, spk_priv
        self.opks = {} if opk_id is None else {opk_id: opk_priv}
        self.sessions: dict = {}  # (IK_A, EK_A) -> Ratchet
        self.current = None  # session that most recently decrypted

    def send(self, pt: bytes) -> bytes:
        if self.current is None:
            raise ProtocolError("Bob has no session to send with")
        return self.sessions[self.current].encrypt(pt)

    def receive(self, wire: bytes) -> bytes:
        if len(wire) < 2:
            raise ProtocolError("too short")
        if wire[1] == TYPE_PREKEY:
            ik_a, ek_a, spk_id, opk_id, header, ct = parse_prekey(wire)
            key = (ik_a, ek_a)
            if key in self.sessions:
                work = copy.deepcopy(self.sessions[key])
                pt = work.decrypt_inplace(header, ct, self.rng)
                self.sessions[key] = work
                self.current = key
                return pt
            if spk_id != self.spk_id:
                raise ProtocolError(f"unknown SPK id {spk_id}")
            opk_priv = None
            if opk_id is not None:
                if opk_id not in self.opks:
                    raise ProtocolError(f"unknown/used OPK id {opk_id}")
                opk_priv = self.opks[opk_id]
            sk, ad = x3dh_responder(self.ik, self.spk_priv, opk_priv, ik_a, ek_a)
            work = Ratchet.init_bob(sk, ad, self.spk_priv)
            pt = work.decrypt_inplace(header, ct, self.rng)
            self.sessions[key] = work
            self.current = key
            if opk_id is not None:
                del self.opks[opk_id]  # delete only after the first decrypt succeeds
            return pt
        header, ct = parse_message(wire)
        last_err: Exception = ProtocolError("no session matches")
        for key, sess in self.sessions.items():
            work = copy.deepcopy(sess)
            try:
                pt = work.decrypt_inplace(header, ct, self.rng)
            except ProtocolError as e:
                last_err = e
                continue
            self.sessions[key] = work
            self.current = key
            return pt
        raise last_err


# ---------------------------------------------------------------- checker
class Checker:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def check(self, ok: bool, what: str):
        self.n += 1
        if not ok:
            self.failed += 1
            print(f"MISMATCH {what}")
        return ok

    def eq(self, got, want, what: str):
        if isinstance(got, (bytes, bytearray)):
            got = got.hex()
        if isinstance(want, (bytes, bytearray)):
            want = want.hex()
        return self.check(got == want, f"{what}: computed {short(got)} file {short(want)}")


def short(v):
    s = str(v)
    return s if len(s) <= 80 else f"{s[:64]}...({len(s)} chars)"


def hx(s: str) -> bytes:
    return bytes.fromhex(s)


X3DH_FIELDS = ["description", "alice_identity_seed", "alice_ephemeral_private",
               "bob_identity_seed", "bob_signed_prekey_id", "bob_signed_prekey_private",
               "bob_signed_prekey_signature", "bob_one_time_prekey_id",
               "bob_one_time_prekey_private", "shared_secret", "associated_data"]
SESSION_FIELDS = ["description", "x3dh", "alice_ratchet_privates",
                  "bob_ratchet_privates", "events"]


def check_hex_lower(c: Checker, obj, path: str):
    """Hex strings in the file must be lowercase."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in ("description", "text", "link_code", "error", "name"):
                check_hex_lower(c, v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            check_hex_lower(c, v, f"{path}[{i}]")
    elif isinstance(obj, str) and obj != obj.lower():
        c.check(False, f"{path}: hex not lowercase")


def check_x3dh(c: Checker, i: int, e: dict):
    tag = f"x3dh[{i}]"
    missing = [f for f in X3DH_FIELDS if f not in e]
    if not c.check(not missing, f"{tag}: missing fields {missing}"):
        return
    ik_a = Identity(hx(e["alice_identity_seed"]))
    ik_b = Identity(hx(e["bob_identity_seed"]))
    # The X25519 form's public key must equal X25519(clamped SHA-512(seed)[..32]).
    c.eq(x25519_pub(ik_a.x_priv), ik_a.x_pub, f"{tag} alice IK montgomery vs scalar")
    c.eq(x25519_pub(ik_b.x_priv), ik_b.x_pub, f"{tag} bob IK montgomery vs scalar")
    spk_priv = hx(e["bob_signed_prekey_private"])
    spk_pub = x25519_pub(spk_priv)
    want_sig = ik_b.sign(enc_x(spk_pub))
    c.eq(want_sig, e["bob_signed_prekey_signature"], f"{tag} bob_signed_prekey_signature")
    c.check(verify_ed(ik_b.ed_pub, hx(e["bob_signed_prekey_signature"]), enc_x(spk_pub)),
            f"{tag} bob_signed_prekey_signature does not verify")
    opk_priv = e["bob_one_time_prekey_private"]
    c.check((opk_priv is None) == (e["bob_one_time_prekey_id"] is None),
            f"{tag} OPK id/private must both be null or both set")
    opk_priv = hx(opk_priv) if opk_priv is not None else None
    opk_pub = x25519_pub(opk_priv) if opk_priv is not None else None
    try:
        sk, ad = x3dh_initiator(ik_a, hx(e["alice_ephemeral_private"]), ik_b.ed_pub,
                                spk_pub, hx(e["bob_signed_prekey_signature"]), opk_pub)
        c.eq(sk, e["shared_secret"], f"{tag} shared_secret (initiator)")
        c.eq(ad, e["associated_data"], f"{tag} associated_data")
        c.eq(len(ad), 66, f"{tag} associated_data length")
    except ProtocolError as ex:
        c.check(False, f"{tag} initiator X3DH failed: {ex}")
    try:
        sk_b, ad_b = x3dh_responder(ik_b, spk_priv, opk_priv, ik_a.ed_pub,
                                    x25519_pub(hx(e["alice_ephemeral_private"])))
        c.eq(sk_b, e["shared_secret"], f"{tag} shared_secret (responder)")
        c.eq(ad_b, e["associated_data"], f"{tag} associated_data (responder)")
    except ProtocolError as ex:
        c.check(False, f"{tag} responder X3DH failed: {ex}")


def check_session(c: Checker, i: int, s: dict, x3dh: list):
    tag = f"sessions[{i}]"
    missing = [f for f in SESSION_FIELDS if f not in s]
    if not c.check(not missing, f"{tag}: missing fields {missing}"):
        return
    xi = s["x3dh"]
    if not c.check(isinstance(xi, int) and 0 <= xi < len(x3dh), f"{tag}: bad x3dh index {xi}"):
        return
    e = x3dh[xi]
    ik_a = Identity(hx(e["alice_identity_seed"]))
    ik_b = Identity(hx(e["bob_identity_seed"]))
    spk_priv = hx(e["bob_signed_prekey_private"])
    opk_priv = hx(e["bob_one_time_prekey_private"]) if e["bob_one_time_prekey_private"] else None
    rng_a = ListRng("alice", [hx(k) for k in s["alice_ratchet_privates"]])
    rng_b = ListRng("bob", [hx(k) for k in s["bob_ratchet_privates"]])
    bundle = {
        "ik": ik_b.ed_pub, "spk_id": e["bob_signed_prekey_id"], "spk_pub": x25519_pub(spk_priv),
        "sig": hx(e["bob_signed_prekey_signature"]), "opk_id": e["bob_one_time_prekey_id"],
        "opk_pub": x25519_pub(opk_priv) if opk_priv else None,
    }
    try:
        alice = Alice(ik_a, hx(e["alice_ephemeral_private"]), bundle, rng_a)
    except ProtocolError as ex:
        c.check(False, f"{tag} alice initialisation failed: {ex}")
        return
    bob = Bob(ik_b, e["bob_signed_prekey_id"], spk_priv,
              e["bob_one_time_prekey_id"], opk_priv, rng_b)
    run_events(c, tag, s["events"], {"alice": alice, "bob": bob})
    c.eq(rng_a.pos, len(rng_a.keys), f"{tag} alice_ratchet_privates consumed")
    c.eq(rng_b.pos, len(rng_b.keys), f"{tag} bob_ratchet_privates consumed")


def run_events(c: Checker, tag: str, events: list, parties: dict):
    """Replays a session's events: each send must give the file's wire bytes,
    each receive the plaintext sent."""
    sends: list[dict] = []
    for j, ev in enumerate(events):
        etag = f"{tag}.events[{j}]"
        op, by = ev.get("op"), ev.get("by")
        if not c.check(by in parties and op in ("send", "receive"),
                       f"{etag}: bad op/by {op!r}/{by!r}"):
            continue
        if op == "send":
            etag += f" (send #{len(sends)} by {by})"
            sends.append(ev)
            try:
                wire = parties[by].send(hx(ev["plaintext"]))
            except ProtocolError as ex:
                c.check(False, f"{etag} wire: send failed: {ex}")
                continue
            if not c.eq(wire, ev["wire"], f"{etag} wire"):
                explain_wire_diff(wire, hx(ev["wire"]), etag)
        else:
            k = ev.get("send_index")
            etag += f" (receive by {by} of send #{k})"
            if not c.check(isinstance(k, int) and 0 <= k < len(sends),
                           f"{etag}: send_index does not refer to an earlier send"):
                continue
            src = sends[k]
            c.check(src["by"] != by, f"{etag}: receiver is the sender")
            try:
                pt = parties[by].receive(hx(src["wire"]))
            except ProtocolError as ex:
                c.check(False, f"{etag} plaintext: decrypt failed: {type(ex).__name__}: {ex}")
                continue
            c.eq(pt, src["plaintext"], f"{etag} plaintext")


# ---------------------------------------------------------------- sealed envelope
def seal(sender: Identity, recipient_ed: bytes, contents: bytes, eph_priv: bytes) -> bytes:
    """protocol.md section 8, sealing side."""
    epk = x25519_pub(eph_priv)
    header = bytes([SEALED_VERSION]) + epk + enc_ed(recipient_ed)
    recipient_x = ed_to_montgomery(recipient_ed)
    okm1 = hkdf(epk + enc_ed(recipient_ed), dh(eph_priv, recipient_x), INFO_SEALED_SENDER, 76)
    key1, nonce1, chain = okm1[:32], okm1[32:44], okm1[44:]
    sender_ct = ChaCha20Poly1305(key1).encrypt(nonce1, sender.ed_pub, header)
    okm2 = hkdf(chain, dh(sender.x_priv, recipient_x), INFO_SEALED_CONTENTS, 44)
    contents_ct = ChaCha20Poly1305(okm2[:32]).encrypt(okm2[32:], contents, header + sender_ct)
    return bytes([SEALED_VERSION]) + epk + sender_ct + contents_ct


def open_sealed(recipient: Identity, sealed: bytes):
    """protocol.md section 8, opening side: returns (sender Ed25519 key, contents)."""
    if len(sealed) < 1 + 32 + 48 + TAG_LEN or sealed[0] != SEALED_VERSION:
        raise ProtocolError("not a sealed envelope of version 2")
    epk = sealed[1:33]
    header = bytes([SEALED_VERSION]) + epk + enc_ed(recipient.ed_pub)
    okm1 = hkdf(epk + enc_ed(recipient.ed_pub), dh(recipient.x_priv, epk), INFO_SEALED_SENDER, 76)
    key1, nonce1, chain = okm1[:32], okm1[32:44], okm1[44:]
    sender_ct = sealed[33:81]
    try:
        sender_ed = ChaCha20Poly1305(key1).decrypt(nonce1, sender_ct, header)
        okm2 = hkdf(chain, dh(recipient.x_priv, ed_to_montgomery(sender_ed)), INFO_SEALED_CONTENTS, 44)
        contents = ChaCha20Poly1305(okm2[:32]).decrypt(okm2[32:], sealed[81:], header + sender_ct)
    except InvalidTag as e:
        raise AuthError("sealed envelope does not authenticate") from e
    return sender_ed, contents


def check_sealed(c: Checker, i: int, e: dict):
    tag = f"sealed[{i}] ({e.get('description', '')})"
    sender = Identity(hx(e["sender_identity_seed"]))
    recipient = Identity(hx(e["recipient_identity_seed"]))
    contents = hx(e["contents"])
    want = hx(e["sealed"])
    got = seal(sender, recipient.ed_pub, contents, hx(e["ephemeral_private"]))
    c.eq(got.hex(), want.hex(), f"{tag} sealed bytes")
    try:
        sender_ed, opened = open_sealed(recipient, want)
        c.eq(sender_ed.hex(), sender.ed_pub.hex(), f"{tag} authenticated sender")
        c.eq(opened.hex(), contents.hex(), f"{tag} contents")
    except ProtocolError as err:
        c.check(False, f"{tag} does not open: {err}")
    # Every single flipped bit makes it refuse.
    for pos in (0, 1, 40, 80, 81, len(want) - 1):
        bad = bytearray(want)
        bad[pos] ^= 0x01
        try:
            open_sealed(recipient, bytes(bad))
            c.check(False, f"{tag} opens with byte {pos} flipped")
        except ProtocolError:
            c.check(True, "")


# ---------------------------------------------------------------- linked devices
DEVICE_LIST_FORMAT = 0x01
MAX_DEVICES = 16
DEVICE_LIST_CONTEXT = b"sotto/device-list/v1"
LINK_CODE_PREFIX = "sotto-link:"
LINK_CODE_DOMAIN = b"sotto/link-code/v1"
LINK_KEY_SALT = b"sotto/link/v1"
LINK_OFFER_DOMAIN = b"sotto/link-offer/v1"
LINK_ACCEPT_DOMAIN = b"sotto/link-accept/v1"
HISTORY_INFO = b"sotto/link/v1/history"
ED_D = (-121665 * pow(121666, P - 2, P)) % P


class Refused(ProtocolError):
    """A refusal, named by the error code of the vectors."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def u64be(n: int) -> bytes:
    return struct.pack(">Q", n)


def ed_point_add(a, b):
    """Twisted Edwards addition, affine (x, y)."""
    (x1, y1), (x2, y2) = a, b
    t = ED_D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P,
            (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P)


def ed25519_key_ok(k: bytes) -> bool:
    """protocol.md section 1: the key decodes (RFC 8032 5.1.3), re-encodes to
    the same 32 bytes, and is not of small order (8 * A is not the neutral
    point)."""
    if len(k) != 32:
        return False
    n = int.from_bytes(k, "little")
    sign, y = n >> 255, n & ((1 << 255) - 1)
    if y >= P:
        return False  # non-canonical y
    u, v = (y * y - 1) % P, (ED_D * y * y + 1) % P
    x = (u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P)) % P
    if (v * x * x - u) % P != 0:
        x = x * pow(2, (P - 1) // 4, P) % P
        if (v * x * x - u) % P != 0:
            return False  # not on the curve
    if x == 0 and sign == 1:
        return False  # non-canonical sign of x = 0
    if x & 1 != sign:
        x = P - x
    a = (x, y)
    for _ in range(3):
        a = ed_point_add(a, a)
    return a != (0, 1)


class ByteReader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise Refused("truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def key(self) -> bytes:
        k = self.take(32)
        if not ed25519_key_ok(k):
            raise Refused("invalid_key")
        return k

    def finish(self):
        if self.pos != len(self.data):
            raise Refused("trailing_bytes")


def read_device_list(r: ByteReader) -> dict:
    """DeviceList = 0x01 || account(32) || u64be(version) || u64be(issued_at)
    || u8(n) || n * (u32be(id) || key(32) || u64be(added_at))."""
    start = r.pos
    if r.uint(1) != DEVICE_LIST_FORMAT:
        raise Refused("unsupported_format")
    account = r.key()
    version = r.uint(8)
    if version == 0:
        raise Refused("version_zero")
    issued_at = r.uint(8)
    n = r.uint(1)
    if n == 0:
        raise Refused("empty")
    if n > MAX_DEVICES:
        raise Refused("too_many_devices")
    devices = []
    for _ in range(n):
        devices.append({"id": r.uint(4), "identity_key": r.key(), "added_at": r.uint(8)})
    for i, d in enumerate(devices):
        if i > 0 and d["id"] == devices[i - 1]["id"]:
            raise Refused("duplicate_id")
        if i > 0 and d["id"] < devices[i - 1]["id"]:
            raise Refused("ids_out_of_order")
        if any(e["identity_key"] == d["identity_key"] for e in devices[:i]):
            raise Refused("duplicate_key")
    return {"account": account, "version": version, "issued_at": issued_at,
            "devices": devices, "encoding": r.data[start:r.pos]}


def encode_device_list(account: bytes, version: int, issued_at: int, devices: list) -> bytes:
    out = bytes([DEVICE_LIST_FORMAT]) + account + u64be(version) + u64be(issued_at)
    out += bytes([len(devices)])
    for d in sorted(devices, key=lambda d: d["id"]):
        out += u32be(d["id"]) + d["identity_key"] + u64be(d["added_at"])
    return out


def read_signed_device_list(r: ByteReader) -> tuple[dict, bytes]:
    lst = read_device_list(r)
    return lst, r.take(64)


def verify_signed_device_list(data: bytes, expected_account: bytes) -> dict:
    r = ByteReader(data)
    lst, sig = read_signed_device_list(r)
    r.finish()
    if lst["account"] != expected_account:
        raise Refused("account_mismatch")
    if not verify_ed(expected_account, sig, DEVICE_LIST_CONTEXT + lst["encoding"]):
        raise Refused("invalid_signature")
    return lst


def supersedes(offered: dict, current: dict | None):
    if current is None:
        return
    if offered["account"] != current["account"]:
        raise Refused("account_mismatch")
    if offered["version"] > current["version"]:
        return
    if offered["version"] == current["version"] and offered["encoding"] != current["encoding"]:
        raise Refused("conflict")
    raise Refused("rollback")


def link_checksum(checked: bytes) -> bytes:
    return hashlib.sha256(LINK_CODE_DOMAIN + checked).digest()[:2]


def link_code_text(device_key: bytes, secret: bytes) -> str:
    checked = bytes([0x01]) + device_key + secret
    symbols = base64.b32encode(checked + link_checksum(checked)).decode().rstrip("=").lower()
    return LINK_CODE_PREFIX + "-".join(symbols[i:i + 5] for i in range(0, len(symbols), 5))


def read_link_code(text: str) -> tuple[bytes, bytes]:
    """protocol.md "Link code": returns (device key, secret) or raises Refused."""
    t = text.strip()
    head = t[:len(LINK_CODE_PREFIX)]
    if not head.isascii() or head.lower() != LINK_CODE_PREFIX:
        raise Refused("prefix")
    symbols = ""
    for c in t[len(LINK_CODE_PREFIX):]:
        if c == "-" or c.isspace():
            continue
        if not (c.isascii() and (c.isalpha() or c in "234567")):
            raise Refused("character")
        symbols += c.upper()
    if len(symbols) != 82:
        raise Refused("length")
    payload = base64.b32decode(symbols + "=" * 6)
    # Canonical: the two unused bits of the last symbol are zero, so the
    # payload encodes back to the same symbols.
    if base64.b32encode(payload).decode().rstrip("=") != symbols:
        raise Refused("character")
    if link_checksum(payload[:49]) != payload[49:]:
        raise Refused("checksum")
    if payload[0] != 0x01:
        raise Refused("unsupported_format")
    if not ed25519_key_ok(payload[1:33]):
        raise Refused("invalid_key")
    return payload[1:33], payload[33:49]


def link_key(secret: bytes, device_key: bytes, account: bytes) -> bytes:
    return hkdf(LINK_KEY_SALT, secret, device_key + account, 32)


def link_offer(lk: bytes, account: bytes, device_id: int, signed_list: bytes) -> bytes:
    body = bytes([0x01]) + account + u32be(device_id) + struct.pack(">H", len(signed_list)) + signed_list
    return body + hmac_sha256(lk, LINK_OFFER_DOMAIN + body)


def open_link_offer(offer: bytes, device_key: bytes, secret: bytes) -> tuple[bytes, int, dict]:
    """The new device's check: returns (account, device id, list)."""
    r = ByteReader(offer)
    if r.uint(1) != 0x01:
        raise Refused("unsupported_format")
    account = r.key()
    device_id = r.uint(4)
    signed = r.take(r.uint(2))
    mac = r.take(32)
    r.finish()
    lk = link_key(secret, device_key, account)
    if not constant_time.bytes_eq(hmac_sha256(lk, LINK_OFFER_DOMAIN + offer[:-32]), mac):
        raise Refused("link_authentication")
    lst = verify_signed_device_list(signed, account)
    if not any(d["id"] == device_id and d["identity_key"] == device_key for d in lst["devices"]):
        raise Refused("device_not_listed")
    return account, device_id, lst


def link_accept(lk: bytes, device_key: bytes, account: bytes, version: int) -> bytes:
    return bytes([0x01]) + u64be(version) + hmac_sha256(
        lk, LINK_ACCEPT_DOMAIN + device_key + account + u64be(version))


def history_transfer_key(lk: bytes, version: int) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA256(), length=32,
                      info=HISTORY_INFO + u64be(version)).derive(lk)


def outcome(f, *args):
    try:
        f(*args)
        return None
    except Refused as e:
        return e.code


def check_devices(c: Checker, dv: dict):
    lists = []
    for i, e in enumerate(dv.get("lists", [])):
        tag = f"devices.lists[{i}] ({e.get('description', '')})"
        account = Identity(hx(e["account_identity_seed"]))
        devices = [{"id": d["id"], "identity_key": hx(d["identity_key"]),
                    "added_at": d["added_at"]} for d in e["devices"]]
        enc = encode_device_list(account.ed_pub, e["version"], e["issued_at"], devices)
        c.eq(enc, e["encoding"], f"{tag} encoding")
        c.eq(enc + account.sign(DEVICE_LIST_CONTEXT + enc), e["signed"], f"{tag} signed")
        try:
            lst = verify_signed_device_list(hx(e["signed"]), account.ed_pub)
            c.check(lst["encoding"] == enc, f"{tag} verifies to another list")
        except Refused as err:
            c.check(False, f"{tag} refused: {err.code}")
            lst = None
        lists.append(lst)
    for i, e in enumerate(dv.get("invalid_lists", [])):
        tag = f"devices.invalid_lists[{i}] ({e.get('description', '')})"
        got = outcome(verify_signed_device_list, hx(e["signed"]), hx(e["account"]))
        c.eq(got, e["error"], f"{tag} refusal")
    for i, e in enumerate(dv.get("updates", [])):
        tag = f"devices.updates[{i}] ({e.get('description', '')})"
        cur = None if e["current"] is None else lists[e["current"]]
        if lists[e["offered"]] is None or (e["current"] is not None and cur is None):
            c.check(False, f"{tag}: refers to a list that does not verify")
            continue
        got = outcome(supersedes, lists[e["offered"]], cur)
        c.eq(got, e["error"], f"{tag} verdict")
    for i, e in enumerate(dv.get("link_codes", [])):
        tag = f"devices.link_codes[{i}] ({e.get('description', '')})"
        try:
            key, secret = read_link_code(e["text"])
            c.check(e["error"] is None, f"{tag}: read, file says {e['error']}")
            if e["error"] is None:
                c.eq(key, e["device_key"], f"{tag} device key")
                c.eq(secret, e["link_secret"], f"{tag} secret")
        except Refused as err:
            c.eq(err.code, e["error"], f"{tag} refusal")
    for i, e in enumerate(dv.get("links", [])):
        tag = f"devices.links[{i}] ({e.get('description', '')})"
        account = Identity(hx(e["account_identity_seed"]))
        device = Identity(hx(e["device_identity_seed"]))
        secret = hx(e["link_secret"])
        listed = dv["lists"][e["list"]]
        c.eq(link_code_text(device.ed_pub, secret), e["link_code"], f"{tag} link code")
        try:
            c.check(read_link_code(e["link_code"]) == (device.ed_pub, secret),
                    f"{tag} link code reads back to other keys")
        except Refused as err:
            c.check(False, f"{tag} link code refused: {err.code}")
        lk = link_key(secret, device.ed_pub, account.ed_pub)
        c.eq(lk, e["link_key"], f"{tag} link key")
        c.eq(link_offer(lk, account.ed_pub, e["device_id"], hx(listed["signed"])), e["offer"],
             f"{tag} offer")
        try:
            acc, dev_id, lst = open_link_offer(hx(e["offer"]), device.ed_pub, secret)
            c.check(acc == account.ed_pub and dev_id == e["device_id"]
                    and lst["encoding"] == hx(listed["encoding"]),
                    f"{tag} offer opens to other contents")
        except Refused as err:
            c.check(False, f"{tag} offer refused: {err.code}")
        version = listed["version"]
        c.eq(link_accept(lk, device.ed_pub, account.ed_pub, version), e["accept"], f"{tag} accept")
        c.eq(history_transfer_key(lk, version), e["history_transfer_key"], f"{tag} history key")
        # A flipped bit anywhere in the offer, or another code, is refused.
        offer = hx(e["offer"])
        for pos in (0, 1, 33, 37, 39, len(offer) - 33, len(offer) - 1):
            bad = bytearray(offer)
            bad[pos] ^= 0x01
            c.check(outcome(open_link_offer, bytes(bad), device.ed_pub, secret) is not None,
                    f"{tag} offer accepted with byte {pos} flipped")
        other_secret = bytes([secret[0] ^ 1]) + secret[1:]
        c.eq(outcome(open_link_offer, offer, device.ed_pub, other_secret), "link_authentication",
             f"{tag} offer under another code")


# ---------------------------------------------------------------- detached bodies
BODY_REFERENCE_FORMAT = 0x01
BLOB_DIGEST_LEN = 32
BODY_REFERENCE_LEN = 1 + 32 + 4 + BLOB_DIGEST_LEN
BODY_AD = b"sotto/detached-body/v1".ljust(64, b"\x00")
BODY_NONCE = bytes(12)


def body_reference(key: bytes, blob: bytes) -> bytes:
    """Reference = 0x01 || body key(32) || u32be(len(blob)) || SHA-256(blob)(32)."""
    return bytes([BODY_REFERENCE_FORMAT]) + key + u32be(len(blob)) + hashlib.sha256(blob).digest()


def seal_body(key: bytes, body: bytes) -> bytes:
    """blob = ChaCha20-Poly1305(key, nonce = 0x00*12, aad = BODY_AD, pad(body))."""
    return ChaCha20Poly1305(key).encrypt(BODY_NONCE, pad(body), BODY_AD)


def open_detached(reference: bytes, blob: bytes) -> bytes:
    """The receiver's checks, in the order of protocol.md "Detached bodies"."""
    if len(reference) != BODY_REFERENCE_LEN:
        raise Refused("reference_length")
    if reference[0] != BODY_REFERENCE_FORMAT:
        raise Refused("unsupported_format")
    key = reference[1:33]
    (blob_len,) = struct.unpack(">I", reference[33:37])
    digest = reference[37:]
    if len(blob) != blob_len:
        raise Refused("blob_length")
    if not constant_time.bytes_eq(hashlib.sha256(blob).digest(), digest):
        raise Refused("digest")
    try:
        padded = ChaCha20Poly1305(key).decrypt(BODY_NONCE, blob, BODY_AD)
    except InvalidTag:
        raise Refused("authentication") from None
    try:
        return unpad(padded)
    except ProtocolError:
        raise Refused("padding") from None


def check_detached_bodies(c: Checker, entries: list):
    for i, e in enumerate(entries):
        tag = f"detached_bodies[{i}] ({e.get('description', '')})"
        key, body = hx(e["key"]), hx(e["body"])
        reference, blob = hx(e["reference"]), hx(e["blob"])
        c.eq(len(key), 32, f"{tag} key length")
        c.eq(seal_body(key, body), blob, f"{tag} blob")
        c.eq(len(blob), padded_len(len(body) + 1) + TAG_LEN, f"{tag} blob length")
        c.eq(body_reference(key, blob), reference, f"{tag} reference")
        try:
            c.eq(open_detached(reference, blob), body, f"{tag} opened body")
        except Refused as err:
            c.check(False, f"{tag} refused: {err.code}")
        # Refusals, each for its own reason.
        with_length = lambda n: reference[:33] + u32be(n) + reference[37:]
        other_digest = reference[:-1] + bytes([reference[-1] ^ 0x01])
        # Another body of the same padded length under the same key: what
        # another recipient of the message, who holds the key, could make.
        other_body = bytes([body[0] ^ 0x01]) + body[1:] if body else b"\x01"
        forged = seal_body(key, other_body)
        c.eq(len(forged), len(blob), f"{tag} another body's blob length")
        refusals = [
            ("another format byte", bytes([0x02]) + reference[1:], blob, "unsupported_format"),
            ("a reference a byte short", reference[:-1], blob, "reference_length"),
            ("a reference a byte long", reference + b"\x00", blob, "reference_length"),
            ("a reference without its digest", reference[:37], blob, "reference_length"),
            ("a blob a byte short", reference, blob[:-1], "blob_length"),
            ("a reference naming a longer blob", with_length(len(blob) + 1), blob, "blob_length"),
            ("a reference with another digest", other_digest, blob, "digest"),
            ("another body of the same length under the same key", reference, forged, "digest"),
            ("another key", body_reference(bytes([key[0] ^ 1]) + key[1:], blob), blob,
             "authentication"),
        ]
        for pos in (0, len(blob) // 2, len(blob) - 1):
            bad = bytearray(blob)
            bad[pos] ^= 0x01
            refusals.append((f"byte {pos} flipped", reference, bytes(bad), "digest"))
            # The same blob, named by its own digest: the AEAD refuses it.
            refusals.append((f"byte {pos} flipped, its digest in the reference",
                             body_reference(key, bytes(bad)), bytes(bad), "authentication"))
        # Authenticates, but the padding is not canonical (one zero too many).
        unpadded = ChaCha20Poly1305(key).encrypt(BODY_NONCE, pad(body) + b"\x00", BODY_AD)
        refusals.append(("padding not canonical", body_reference(key, unpadded), unpadded,
                         "padding"))
        for what, ref, bad_blob, code in refusals:
            c.eq(outcome(open_detached, ref, bad_blob), code, f"{tag} {what}")


# ---------------------------------------------------------------- groups (sender keys)
GROUP_VERSION = 0x01
GROUP_TYPE = 0x03
GROUP_HEADER_LEN = 2 + 32 + 4 + 4
GROUP_AD_LEN = 64
GROUP_SIG_LEN = 64
INFO_GROUP_MESSAGE = b"Sotto_GroupMessage_v1"
GROUP_MAX_SKIP = 1000
GROUP_MAX_SKIPPED = 2000
GROUP_MAX_CHAINS = 5
GROUP_MAX_CIPHERTEXT = padded_len(MAX_PLAINTEXT + 1) + TAG_LEN
DISTRIBUTION_FORMAT = 0x01
GROUP_STATE_VERSION = 0x01


def group_message_key(mk: bytes):
    out = hkdf(bytes(32), mk, INFO_GROUP_MESSAGE, 44)
    return out[:32], out[32:]


def ed25519_public(seed: bytes) -> bytes:
    return raw(Ed25519PrivateKey.from_private_bytes(seed).public_key())


def group_header(group_id: bytes, chain_id: int, iteration: int) -> bytes:
    return bytes([GROUP_VERSION, GROUP_TYPE]) + group_id + u32be(chain_id) + u32be(iteration)


def encode_distribution(group_id, chain_id, iteration, ck, signing_public) -> bytes:
    return (bytes([DISTRIBUTION_FORMAT]) + group_id + u32be(chain_id) + u32be(iteration)
            + ck + signing_public)


def decode_distribution(data: bytes) -> dict:
    r = ByteReader(data)
    if r.uint(1) != DISTRIBUTION_FORMAT:
        raise Refused("unsupported_format")
    d = {"group_id": r.take(32), "chain_id": r.uint(4), "iteration": r.uint(4),
         "ck": r.take(32)}
    key = r.take(32)
    if not ed25519_key_ok(key):
        raise Refused("invalid_key")
    d["signing_public"] = key
    r.finish()
    return d


class Draws:
    """The caller's RNG: hands out the listed draws, each of the length asked."""

    def __init__(self, draws: list[bytes]):
        self.draws, self.pos, self.bad = draws, 0, 0

    def draw(self, n: int) -> bytes:
        if self.pos >= len(self.draws) or len(self.draws[self.pos]) != n:
            self.bad += 1
            return bytes(n)
        out = self.draws[self.pos]
        self.pos += 1
        return out


class GroupSender:
    """A sender key (section 14): chain id, iteration, CK, signing seed."""

    def __init__(self, group_id: bytes, rng: Draws):
        self.group_id = group_id
        self.chain_id = None
        self._new_chain(rng)

    def _new_chain(self, rng: Draws):
        chain_id = int.from_bytes(rng.draw(4), "big")
        while chain_id == self.chain_id:
            chain_id = int.from_bytes(rng.draw(4), "big")
        self.chain_id = chain_id
        self.ck = rng.draw(32)
        self.iteration = 0
        self.seed = rng.draw(32)

    def rotate(self, rng: Draws):
        self._new_chain(rng)

    def distribution(self) -> bytes:
        return encode_distribution(self.group_id, self.chain_id, self.iteration, self.ck,
                                   ed25519_public(self.seed))

    def encrypt(self, pt: bytes) -> bytes:
        header = group_header(self.group_id, self.chain_id, self.iteration)
        self.ck, mk = kdf_ck(self.ck)
        self.iteration += 1
        key, nonce = group_message_key(mk)
        ct = ChaCha20Poly1305(key).encrypt(nonce, pad(pt), header.ljust(GROUP_AD_LEN, b"\x00"))
        sig = Ed25519PrivateKey.from_private_bytes(self.seed).sign(header + ct)
        return header + ct + sig

    def state(self) -> bytes:
        return (bytes([GROUP_STATE_VERSION, 0x01]) + self.group_id + u32be(self.chain_id)
                + u32be(self.iteration) + self.ck + self.seed)


def parse_group_message(data: bytes):
    if len(data) < 1:
        raise Refused("truncated")
    if data[0] != GROUP_VERSION:
        raise Refused("unsupported_version")
    if len(data) < 2:
        raise Refused("truncated")
    if data[1] != GROUP_TYPE:
        raise Refused("unknown_type")
    if len(data) < GROUP_HEADER_LEN + MIN_CIPHERTEXT + GROUP_SIG_LEN:
        raise Refused("truncated")
    header, ct, sig = data[:GROUP_HEADER_LEN], data[GROUP_HEADER_LEN:-GROUP_SIG_LEN], data[-GROUP_SIG_LEN:]
    if len(ct) > GROUP_MAX_CIPHERTEXT:
        raise Refused("ciphertext_too_long")
    if padded_len(len(ct) - TAG_LEN) != len(ct) - TAG_LEN:
        raise Refused("ciphertext_length")
    group_id = header[2:34]
    chain_id, iteration = struct.unpack(">II", header[34:42])
    return header, group_id, chain_id, iteration, ct, sig


class GroupReceiver:
    """One sender device's chains (most recently added first) and skipped keys."""

    def __init__(self, dist: dict):
        self.group_id = dist["group_id"]
        self.chains = [self._chain(dist)]
        self.skipped: OrderedDict = OrderedDict()  # (chain_id, iteration) -> mk

    @staticmethod
    def _chain(d: dict) -> dict:
        return {"id": d["chain_id"], "n": d["iteration"], "ck": d["ck"], "key": d["signing_public"]}

    def process(self, d: dict) -> str:
        if d["group_id"] != self.group_id:
            raise Refused("group_mismatch")
        for c in self.chains:
            if c["id"] == d["chain_id"]:
                if c["key"] != d["signing_public"]:
                    raise Refused("chain_conflict")
                return "already_known"
        self.chains.insert(0, self._chain(d))
        while len(self.chains) > GROUP_MAX_CHAINS:
            dropped = self.chains.pop()
            for k in [k for k in self.skipped if k[0] == dropped["id"]]:
                del self.skipped[k]
        return "added"

    def decrypt(self, data: bytes) -> bytes:
        """Transactional: works on copies, commits only on success."""
        header, group_id, chain_id, n, ct, sig = parse_group_message(data)
        if group_id != self.group_id:
            raise Refused("group_mismatch")
        matching = [c for c in self.chains if c["id"] == chain_id]
        if not matching:
            raise Refused("unknown_chain")
        chain = matching[0]
        if not verify_ed(chain["key"], sig, header + ct):
            raise Refused("invalid_signature")
        skipped = OrderedDict(self.skipped)
        ck, nr = chain["ck"], chain["n"]
        if n < nr:
            if (chain_id, n) not in skipped:
                raise Refused("duplicate")
            mk = skipped.pop((chain_id, n))
        else:
            if n - nr > GROUP_MAX_SKIP:
                raise Refused("too_many_skipped")
            while nr < n:
                ck, mk = kdf_ck(ck)
                skipped[(chain_id, nr)] = mk
                nr += 1
            ck, mk = kdf_ck(ck)
            nr += 1
            while len(skipped) > GROUP_MAX_SKIPPED:
                skipped.popitem(last=False)
        key, nonce = group_message_key(mk)
        try:
            padded = ChaCha20Poly1305(key).decrypt(nonce, ct, header.ljust(GROUP_AD_LEN, b"\x00"))
        except InvalidTag as e:
            raise Refused("authentication_failed") from e
        try:
            pt = unpad(padded)
        except ProtocolError as e:
            raise Refused("padding") from e
        chain["ck"], chain["n"] = ck, nr
        self.skipped = skipped
        return pt

    def state(self) -> bytes:
        out = bytes([GROUP_STATE_VERSION, 0x02]) + self.group_id + bytes([len(self.chains)])
        for c in self.chains:
            out += u32be(c["id"]) + u32be(c["n"]) + c["ck"] + c["key"]
        out += struct.pack(">H", len(self.skipped))
        for (chain_id, n), mk in self.skipped.items():
            out += u32be(chain_id) + u32be(n) + mk
        return out


GROUP_FIELDS = ["description", "group_id", "chains", "events", "sender_state", "receiver_state"]
GROUP_CHAIN_FIELDS = ["chain_id_draw", "chain_id", "chain_key", "signing_seed", "signing_public"]


def check_groups(c: Checker, entries: list):
    for i, g in enumerate(entries):
        tag = f"groups[{i}] ({g.get('description', '')})"
        missing = [f for f in GROUP_FIELDS if f not in g]
        if missing:
            c.check(False, f"{tag}: missing fields {missing}")
            continue
        draws = [hx(g["group_id"])]
        for k, ch in enumerate(g["chains"]):
            missing = [f for f in GROUP_CHAIN_FIELDS if f not in ch]
            if missing:
                c.check(False, f"{tag} chains[{k}]: missing fields {missing}")
                continue
            id_draw = hx(ch["chain_id_draw"])
            c.eq(len(id_draw), 4, f"{tag} chains[{k}] chain_id_draw length")
            c.eq(int.from_bytes(id_draw, "big"), ch["chain_id"], f"{tag} chains[{k}] chain_id")
            c.eq(ed25519_public(hx(ch["signing_seed"])), hx(ch["signing_public"]),
                 f"{tag} chains[{k}] signing_public")
            draws += [id_draw, hx(ch["chain_key"]), hx(ch["signing_seed"])]
        rng = Draws(draws)
        group_id = rng.draw(32)
        sender = GroupSender(group_id, rng)
        receiver = None
        distributions: list[bytes] = []
        sends = [e for e in g["events"] if e["op"] == "send"]
        for j, e in enumerate(g["events"]):
            etag = f"{tag} events[{j}] ({e['op']})"
            op = e["op"]
            if op == "send":
                wire = hx(e["wire"])
                got = sender.encrypt(hx(e["plaintext"]))
                if not c.eq(got, wire, f"{etag} wire"):
                    explain_wire_diff(got, wire, etag)
            elif op == "rotate":
                sender.rotate(rng)
            elif op == "distribution":
                c.eq(sender.distribution(), hx(e["distribution"]), f"{etag} distribution")
                distributions.append(hx(e["distribution"]))
            elif op == "process":
                k = e["distribution_index"]
                if not c.check(0 <= k < len(distributions), f"{etag}: no distribution {k}"):
                    continue
                try:
                    d = decode_distribution(distributions[k])
                    if receiver is None:
                        receiver = GroupReceiver(d)
                        status = "added"
                    else:
                        status = receiver.process(d)
                except Refused as err:
                    status = f"refused: {err.code}"
                c.eq(status, e["status"], f"{etag} status")
            elif op in ("receive", "refuse"):
                k = e["send_index"]
                if not c.check(0 <= k < len(sends) and receiver is not None,
                               f"{etag}: no send {k} or no receiver"):
                    continue
                before = receiver.state()
                try:
                    pt = receiver.decrypt(hx(sends[k]["wire"]))
                    outcome_ = ("ok", pt.hex())
                except Refused as err:
                    outcome_ = ("refused", err.code)
                if op == "receive":
                    c.eq(outcome_, ("ok", sends[k]["plaintext"]), f"{etag} send {k}")
                else:
                    c.eq(outcome_, ("refused", e["error"]), f"{etag} send {k}")
                    c.eq(receiver.state(), before, f"{etag} receiver unchanged")
            else:
                c.check(False, f"{etag}: unknown op")
        c.check(rng.bad == 0 and rng.pos == len(rng.draws),
                f"{tag}: {len(rng.draws) - rng.pos} listed draws unused, {rng.bad} bad draws")
        c.eq(sender.state(), hx(g["sender_state"]), f"{tag} sender_state")
        if c.check(receiver is not None, f"{tag}: no receiver"):
            c.eq(receiver.state(), hx(g["receiver_state"]), f"{tag} receiver_state")
        # Refusals from the spec on the first message, against a fresh receiver
        # made from the first distribution.
        if not sends or not distributions:
            continue
        wire = hx(sends[0]["wire"])
        fresh = lambda: GroupReceiver(decode_distribution(distributions[0]))
        flip = lambda b, at: b[:at] + bytes([b[at] ^ 0x01]) + b[at + 1:]
        refusals = [
            ("version byte", bytes([0x02]) + wire[1:], "unsupported_version"),
            ("a one-to-one Message's type byte", wire[:1] + bytes([0x02]) + wire[2:], "unknown_type"),
            ("one byte short of the smallest", wire[:GROUP_HEADER_LEN + MIN_CIPHERTEXT + GROUP_SIG_LEN - 1],
             "truncated"),
            ("a byte more", wire + b"\x00", "ciphertext_length"),
            ("a byte less", wire[:-1], "truncated" if len(wire) == 378 else "ciphertext_length"),
            ("another group id", flip(wire, 2), "group_mismatch"),
            ("another chain id", flip(wire, 34), "unknown_chain"),
            ("another iteration", flip(wire, 41), "invalid_signature"),
            ("a ciphertext bit", flip(wire, GROUP_HEADER_LEN), "invalid_signature"),
            ("a signature bit", flip(wire, len(wire) - 1), "invalid_signature"),
        ]
        for what, bad, code in refusals:
            r = fresh()
            before = r.state()
            c.eq(outcome(r.decrypt, bad), code, f"{tag} refused: {what}")
            c.eq(r.state(), before, f"{tag} refused unchanged: {what}")
        # A member knows the chain key but not the signing key: the same
        # header and a valid AEAD, signed with another key, is refused.
        d0 = decode_distribution(distributions[0])
        mallory = GroupSender.__new__(GroupSender)
        mallory.group_id, mallory.chain_id = d0["group_id"], d0["chain_id"]
        mallory.ck, mallory.iteration, mallory.seed = d0["ck"], d0["iteration"], b"\x66" * 32
        forged = mallory.encrypt(b"forged")
        c.eq(forged[:GROUP_HEADER_LEN], wire[:GROUP_HEADER_LEN], f"{tag} forgery header")
        c.eq(outcome(fresh().decrypt, forged), "invalid_signature", f"{tag} forgery by a member")
        # Gap limit: an iteration more than 1000 ahead is refused before any key
        # is derived (the signature is checked first, so sign it with the key).
        far = GroupSender.__new__(GroupSender)
        far.group_id, far.chain_id, far.seed = group_id, d0["chain_id"], hx(g["chains"][0]["signing_seed"])
        far.ck, far.iteration = bytes(32), d0["iteration"] + GROUP_MAX_SKIP + 1
        c.eq(outcome(fresh().decrypt, far.encrypt(b"")), "too_many_skipped", f"{tag} gap over MAX_SKIP")
        # The distribution's strict decoding.
        dist = distributions[0]
        c.eq(outcome(decode_distribution, dist[:-1]), "truncated", f"{tag} distribution short")
        c.eq(outcome(decode_distribution, dist + b"\x00"), "trailing_bytes", f"{tag} distribution long")
        c.eq(outcome(decode_distribution, b"\x02" + dist[1:]), "unsupported_format",
             f"{tag} distribution format")
        c.eq(outcome(decode_distribution, dist[:73] + b"\x01" + bytes(31)), "invalid_key",
             f"{tag} distribution small-order key")


# ---------------------------------------------------------------- group membership
GROUP_ID_LEN = 32  # section 14's group_id: one id names the group in both sections
GROUP_CHANGE_FORMAT = 0x01
GROUP_CHANGE_CONTEXT = b"sotto/group-change/v1"
GROUP_CHANGE_HASH_CONTEXT = b"sotto/group-change-hash/v1"
GROUP_STATE_CONTEXT = b"sotto/group-state/v1"
GROUP_MAX_MEMBERS = 1000
GROUP_MAX_NAME = 128
GROUP_KINDS = {0x01: "create", 0x02: "add", 0x03: "remove", 0x04: "leave", 0x05: "rename"}
GROUP_KIND_BYTES = {v: k for k, v in GROUP_KINDS.items()}


def read_group_name(r: ByteReader) -> str:
    n = r.uint(1)
    if n > GROUP_MAX_NAME:
        raise Refused("name_too_long")
    try:
        return r.take(n).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("invalid_name")


def read_group_accounts(r: ByteReader, kind: str) -> list:
    n = r.uint(2)
    if (n + 1 if kind == "create" else n) > GROUP_MAX_MEMBERS:
        raise Refused("too_many_members")
    if n == 0 and kind != "create":
        raise Refused("empty")
    return [r.key() for _ in range(n)]


def read_group_change(data: bytes) -> dict:
    """protocol.md 15.2: Change = 0x01 || kind || group id(32) || u64be(revision)
    || parent(32) || author(32) || body || sig(64), read strictly in order."""
    r = ByteReader(data)
    if r.uint(1) != GROUP_CHANGE_FORMAT:
        raise Refused("unsupported_format")
    kind = GROUP_KINDS.get(r.uint(1))
    if kind is None:
        raise Refused("unknown_kind")
    group, revision, parent = r.take(GROUP_ID_LEN), r.uint(8), r.take(32)
    if not ((revision == 1 and parent == bytes(32)) if kind == "create" else revision >= 2):
        raise Refused("invalid_revision")
    author = r.key()
    name = read_group_name(r) if kind in ("create", "rename") else None
    accounts = read_group_accounts(r, kind) if kind in ("create", "add", "remove") else []
    for i, k in enumerate(accounts):
        if k == author:
            raise Refused("author_listed")
        if i > 0 and k == accounts[i - 1]:
            raise Refused("duplicate_member")
        if i > 0 and k < accounts[i - 1]:
            raise Refused("members_out_of_order")
    sig = r.take(64)
    r.finish()
    if not verify_ed(author, sig, GROUP_CHANGE_CONTEXT + data[:-64]):
        raise Refused("invalid_signature")
    return {"kind": kind, "group": group, "revision": revision, "parent": parent,
            "author": author, "name": name, "accounts": accounts,
            "hash": hashlib.sha256(GROUP_CHANGE_HASH_CONTEXT + data).digest()}


def encode_group_change(author: Identity, kind: str, group: bytes, revision: int,
                        parent: bytes, name: str | None, accounts: list) -> bytes:
    out = bytes([GROUP_CHANGE_FORMAT, GROUP_KIND_BYTES[kind]]) + group + u64be(revision)
    out += parent + author.ed_pub
    if kind in ("create", "rename"):
        out += bytes([len(name.encode())]) + name.encode()
    if kind in ("create", "add", "remove"):
        out += struct.pack(">H", len(accounts)) + b"".join(accounts)
    return out + author.sign(GROUP_CHANGE_CONTEXT + out)


def group_state_hash(group: bytes, st: dict) -> bytes:
    """SHA-256("sotto/group-state/v1" || id || u64be(revision) || head || u8(len)
    || name || u16be(n) || n * (account || u64be(since))), members in key order."""
    name = st["name"].encode()
    members = sorted(st["members"].items())
    return hashlib.sha256(
        GROUP_STATE_CONTEXT + group + u64be(st["revision"]) + st["head"] + bytes([len(name)])
        + name + struct.pack(">H", len(members))
        + b"".join(k + u64be(since) for k, since in members)).digest()


def group_validate(st: dict, ch: dict):
    """The rules of protocol.md 15.5 for a change on its parent state."""
    if ch["author"] not in st["members"]:
        raise Refused("author_not_member")
    if ch["kind"] == "add":
        for k in ch["accounts"]:
            if k in st["members"]:
                raise Refused("already_member")
        if len(st["members"]) + len(ch["accounts"]) > GROUP_MAX_MEMBERS:
            raise Refused("too_many_members")
    elif ch["kind"] == "remove":
        for k in ch["accounts"]:
            if k not in st["members"]:
                raise Refused("not_member")
    elif ch["kind"] == "rename" and ch["name"] == st["name"]:
        raise Refused("name_unchanged")


def group_advance(group: bytes, st: dict | None, ch: dict) -> dict:
    rev = ch["revision"]
    if ch["kind"] == "create":
        members = {k: rev for k in ch["accounts"] + [ch["author"]]}
        name = ch["name"]
    else:
        members, name = dict(st["members"]), st["name"]
        if ch["kind"] == "add":
            members.update({k: rev for k in ch["accounts"]})
        elif ch["kind"] == "remove":
            for k in ch["accounts"]:
                del members[k]
        elif ch["kind"] == "leave":
            del members[ch["author"]]
        else:
            name = ch["name"]
    out = {"revision": rev, "name": name, "members": members, "head": ch["hash"]}
    out["hash"] = group_state_hash(group, out)
    return out


def group_apply(group: bytes, genesis: bytes, st: dict, data: bytes) -> dict:
    """A change received from its author by a copy whose state is `st` (the
    cases of protocol.md 15.6 that need no older state)."""
    ch = read_group_change(data)
    if ch["group"] != group:
        raise Refused("wrong_group")
    if ch["kind"] == "create":
        if ch["hash"] == genesis:
            return st
        raise Refused("conflicting_create")
    if ch["revision"] - 1 > st["revision"]:
        raise Refused("missing_revisions")
    if ch["revision"] - 1 < st["revision"]:
        raise ProtocolError("a change on an older state: not modelled here")
    if ch["parent"] != st["hash"]:
        raise Refused("unknown_parent")
    group_validate(st, ch)
    return group_advance(group, st, ch)


def group_precedence(st: dict, ch: dict):
    """Concurrent changes: the smaller (author's since, author, change hash) wins."""
    return (st["members"][ch["author"]], ch["author"], ch["hash"])


def check_group_membership(c: Checker, gv: dict):
    accounts = []
    for i, a in enumerate(gv["accounts"]):
        ident = Identity(hx(a["identity_seed"]))
        c.eq(ident.ed_pub, a["account_key"], f"group_membership.accounts[{i}] account key")
        accounts.append(ident)
    keys = [a.ed_pub for a in accounts]
    group = hx(gv["group_id"])
    c.eq(len(group), GROUP_ID_LEN, "group_membership.group_id length")
    states, genesis, st = [], None, None
    for i, e in enumerate(gv["changes"]):
        tag = f"group_membership.changes[{i}] ({e.get('description', '')})"
        parent = st["hash"] if st else bytes(32)
        revision = st["revision"] + 1 if st else 1
        c.eq(hx(e["parent"]), parent, f"{tag} parent")
        c.eq(e["revision"], revision, f"{tag} revision")
        made = encode_group_change(accounts[e["author"]], e["kind"], group, revision, parent,
                                   e["name"], [keys[m] for m in e["members"]])
        c.eq(made, e["change"], f"{tag} change")
        # The file's bytes, applied by a copy holding the state before.
        if st is not None:
            got = outcome(group_apply, group, genesis, st, hx(e["change"]))
            c.eq(got, None, f"{tag} the file's change refused")
        # The checker goes on from the change it made itself.
        try:
            ch = read_group_change(made)
            c.eq(ch["hash"], e["change_hash"], f"{tag} change hash")
            if st is None:
                genesis = ch["hash"]
                st = group_advance(group, None, ch)
            else:
                st = group_apply(group, genesis, st, made)
        except Refused as err:
            c.check(False, f"{tag} refused: {err.code}")
            break
        want = e["state"]
        got_members = [{"account": keys.index(k), "since": since}
                       for k, since in sorted(st["members"].items())]
        c.eq(st["revision"], want["revision"], f"{tag} state revision")
        c.eq(st["name"], want["name"], f"{tag} state name")
        c.eq(got_members, want["members"], f"{tag} state members")
        c.eq(st["head"], want["head"], f"{tag} state head")
        c.eq(st["hash"], want["hash"], f"{tag} state hash")
        states.append(st)
    for i, e in enumerate(gv["concurrent"]):
        tag = f"group_membership.concurrent[{i}] ({e.get('description', '')})"
        if not c.check(e["state"] < len(states), f"{tag}: no state {e['state']}"):
            continue
        on = states[e["state"]]
        try:
            changes = [read_group_change(hx(x)) for x in e["changes"]]
            for ch in changes:
                c.check(ch["parent"] == on["hash"] and ch["revision"] == on["revision"] + 1,
                        f"{tag}: a change not on the state")
                group_validate(on, ch)
        except Refused as err:
            c.check(False, f"{tag} refused: {err.code}")
            continue
        winner = min(range(len(changes)), key=lambda k: group_precedence(on, changes[k]))
        c.eq(winner, e["winner"], f"{tag} winner")
        c.eq(group_advance(group, on, changes[winner])["hash"], e["result"], f"{tag} result")
    for i, e in enumerate(gv["invalid"]):
        tag = f"group_membership.invalid[{i}] ({e.get('description', '')})"
        if not c.check(e["state"] < len(states), f"{tag}: no state {e['state']}"):
            continue
        got = outcome(group_apply, group, genesis, states[e["state"]], hx(e["change"]))
        c.eq(got, e["error"], f"{tag} refusal")
    # Each change of the group, with one byte flipped anywhere, is refused.
    for i, e in enumerate(gv["changes"][1:len(states)], start=1):
        data = hx(e["change"])
        for pos in range(len(data)):
            bad = bytearray(data)
            bad[pos] ^= 0x01
            c.check(outcome(group_apply, group, genesis, states[i - 1], bytes(bad)) is not None,
                    f"group_membership.changes[{i}] accepted with byte {pos} flipped")


# ---------------------------------------------------------------- version 2 (section 16)
# The hybrid handshake: ML-KEM-768 (FIPS 203) from kyber-py, imported only
# when a version 2 file is checked, so that version 1 files need only
# `cryptography`.
INFO_PQXDH = b"Sotto_PQXDH_v2"
V2_ONLY_DOMAIN = b"Sotto_SPK_v2_only"
KEM_TYPE_ML_KEM_768 = 0x0A
KEM_EK_LEN = 1184
KEM_CT_LEN = 1088
KEM_Q = 3329
V2_BUNDLE_FIELDS = ["description", "identity_seed", "versions", "signed_prekey_id",
                    "signed_prekey_private", "signed_prekey_signature",
                    "one_time_prekey_id", "one_time_prekey_private", "kem_prekey_id",
                    "kem_prekey_kind", "kem_prekey_seed", "kem_encapsulation_key",
                    "kem_prekey_signature", "encoding"]
V2_PQXDH_FIELDS = ["description", "bundle", "alice_identity_seed", "alice_ephemeral_private",
                   "kem_message", "kem_ciphertext", "kem_shared_secret", "shared_secret",
                   "associated_data"]


def ml_kem():
    from kyber_py.ml_kem import ML_KEM_768
    return ML_KEM_768


def kem_keygen(seed: bytes):
    """ML-KEM.KeyGen_internal(d, z) with seed = d || z: (ek, dk)."""
    return ml_kem().key_derive(seed)


def kem_encaps(ek: bytes, m: bytes):
    """ML-KEM.Encaps_internal(ek, m): (CT, SS)."""
    ss, ct = ml_kem()._encaps_internal(ek, m)
    return ct, ss


def kem_decaps(dk: bytes, ct: bytes) -> bytes:
    return ml_kem().decaps(dk, ct)


def kem_key_ok(ek: bytes) -> bool:
    """16.1: 1184 bytes, and every 12-bit coefficient of the 3 * 256 encoded
    ones (the first 1152 bytes; the last 32 are the seed rho) below q."""
    if len(ek) != KEM_EK_LEN:
        return False
    for i in range(0, 1152, 3):
        b0, b1, b2 = ek[i], ek[i + 1], ek[i + 2]
        if (b0 | (b1 & 0x0F) << 8) >= KEM_Q or (b1 >> 4 | b2 << 4) >= KEM_Q:
            return False
    return True


def x25519_prekey_ok(k: bytes) -> bool:
    """Section 1: canonical (below 2^255 - 19, top bit clear) and not of
    small order (X25519 with a fixed scalar is not all zeros)."""
    if int.from_bytes(k, "little") >= P:
        return False
    try:
        dh(bytes([9] * 32), k)
    except ProtocolError:
        return False
    return True


def spk_message(versions: int, spk_pub: bytes) -> bytes:
    """16.2: what `sig` covers for `versions`."""
    return enc_x(spk_pub) if versions & 0x01 else V2_ONLY_DOMAIN + enc_x(spk_pub)


def encode_bundle_v2(b: dict) -> bytes:
    out = bytes([VERSION_V2, b["versions"]]) + b["ik"] + u32be(b["spk_id"]) + b["spk_pub"] + b["sig"]
    if b["opk_id"] is None:
        out += b"\x00"
    else:
        out += b"\x01" + u32be(b["opk_id"]) + b["opk_pub"]
    return out + u32be(b["kem_id"]) + b["ek"] + b["kem_sig"]


def decode_bundle(data: bytes) -> dict:
    """Sections 2 and 16.2, strict: both bundle versions."""
    r = ByteReader(data)
    version = r.uint(1)
    if version == VERSION:
        versions = 0x01
    elif version == VERSION_V2:
        versions = r.uint(1)
        if versions not in (0x02, 0x03):
            raise Refused("invalid_bundle")
    else:
        raise Refused("unsupported_version")
    ik = r.take(32)
    if not ed25519_key_ok(ik):
        raise Refused("invalid_identity_key")
    b = {"versions": versions, "ik": ik, "spk_id": r.uint(4), "spk_pub": r.take(32),
         "sig": r.take(64), "opk_id": None, "opk_pub": None, "kem_id": None}
    flag = r.uint(1)
    if flag == 1:
        b["opk_id"], b["opk_pub"] = r.uint(4), r.take(32)
    elif flag != 0:
        raise Refused("invalid_flag")
    if versions & 0x02:
        b["kem_id"] = r.uint(4)
        b["ek"] = r.take(KEM_EK_LEN)
        if not kem_key_ok(b["ek"]):
            raise Refused("invalid_kem_key")
        b["kem_sig"] = r.take(64)
    r.finish()
    return b


def verify_bundle(b: dict):
    """16.2: sig over what versions says, SPK and OPK checks, kem_sig."""
    if not verify_ed(b["ik"], b["sig"], spk_message(b["versions"], b["spk_pub"])):
        raise Refused("invalid_signature")
    for key in (b["spk_pub"], b["opk_pub"]):
        if key is not None and not x25519_prekey_ok(key):
            raise Refused("invalid_prekey")
    if b["kem_id"] is not None and not verify_ed(
            b["ik"], b["kem_sig"], bytes([KEM_TYPE_ML_KEM_768]) + b["ek"]):
        raise Refused("invalid_signature")


class Owner:
    """A bundle vector's owner: its keys, recomputed from the seeds."""

    def __init__(self, e: dict):
        self.ik = Identity(hx(e["identity_seed"]))
        self.versions = e["versions"]
        self.spk_id, self.spk_priv = e["signed_prekey_id"], hx(e["signed_prekey_private"])
        self.spk_pub = x25519_pub(self.spk_priv)
        opk = e["one_time_prekey_private"]
        self.opk_id = e["one_time_prekey_id"]
        self.opk_priv = hx(opk) if opk is not None else None
        self.kem_id = e["kem_prekey_id"]
        self.kem_one_time = e["kem_prekey_kind"] == "one_time"
        self.ek, self.dk = kem_keygen(hx(e["kem_prekey_seed"]))

    def bundle(self) -> dict:
        return {"versions": self.versions, "ik": self.ik.ed_pub, "spk_id": self.spk_id,
                "spk_pub": self.spk_pub,
                "sig": self.ik.sign(spk_message(self.versions, self.spk_pub)),
                "opk_id": self.opk_id,
                "opk_pub": x25519_pub(self.opk_priv) if self.opk_priv is not None else None,
                "kem_id": self.kem_id, "ek": self.ek,
                "kem_sig": self.ik.sign(bytes([KEM_TYPE_ML_KEM_768]) + self.ek)}


def pqxdh_sk(dhs: list[bytes], ss: bytes) -> bytes:
    """16.3: SK = HKDF(0x00*32, 0xFF*32 || DH1 || DH2 || DH3 [|| DH4] || SS)."""
    return hkdf(bytes(32), x3dh_ikm(dhs) + ss, INFO_PQXDH, 32)


def pqxdh_initiator(ik_a: Identity, ek_a_priv: bytes, m: bytes, b: dict):
    verify_bundle(b)
    ik_b_x = ed_to_montgomery(b["ik"])
    dhs = [dh(ik_a.x_priv, b["spk_pub"]), dh(ek_a_priv, ik_b_x), dh(ek_a_priv, b["spk_pub"])]
    if b["opk_pub"] is not None:
        dhs.append(dh(ek_a_priv, b["opk_pub"]))
    ct, ss = kem_encaps(b["ek"], m)
    return pqxdh_sk(dhs, ss), enc_ed(ik_a.ed_pub) + enc_ed(b["ik"]), ct, ss


def pqxdh_responder(owner: Owner, opk_priv, ik_a_ed: bytes, ek_a_pub: bytes, ct: bytes):
    ik_a_x = ed_to_montgomery(ik_a_ed)
    dhs = [dh(owner.spk_priv, ik_a_x), dh(owner.ik.x_priv, ek_a_pub),
           dh(owner.spk_priv, ek_a_pub)]
    if opk_priv is not None:
        dhs.append(dh(opk_priv, ek_a_pub))
    return pqxdh_sk(dhs, kem_decaps(owner.dk, ct)), enc_ed(ik_a_ed) + enc_ed(owner.ik.ed_pub)


def parse_prekey_v2(buf: bytes):
    """16.4: PreKeyMessage v2, strict."""
    r = ByteReader(buf)
    if r.uint(1) != VERSION_V2:
        raise Refused("unsupported_version")
    if r.uint(1) != TYPE_PREKEY:
        raise Refused("unknown_message_type")
    ik_a = r.take(32)
    if not ed25519_key_ok(ik_a):
        raise Refused("invalid_identity_key")
    ek_a = r.take(32)
    if int.from_bytes(ek_a, "little") >= P:
        raise Refused("invalid_base_key")
    spk_id = r.uint(4)
    flag = r.uint(1)
    if flag == 1:
        opk_id = r.uint(4)
    elif flag == 0:
        opk_id = None
    else:
        raise Refused("invalid_flag")
    kem_id = r.uint(4)
    ct = r.take(KEM_CT_LEN)
    rest = buf[r.pos:]
    if len(rest) < 1 or rest[0] != VERSION_V2:
        raise Refused("unsupported_version" if rest else "truncated")
    header, ctext = parse_message(rest, VERSION_V2)
    return ik_a, ek_a, spk_id, opk_id, kem_id, ct, header, ctext


class AliceV2(Alice):
    def __init__(self, ik: Identity, ek_priv: bytes, m: bytes, b: dict, rng: ListRng):
        self.ik, self.rng = ik, rng
        self.ek_pub = x25519_pub(ek_priv)
        self.b = b
        sk, ad, self.ct, _ = pqxdh_initiator(ik, ek_priv, m, b)
        self.session = Ratchet.init_alice(sk, ad, b["spk_pub"], rng)
        self.session.version = VERSION_V2
        self.got_reply = False

    def send(self, pt: bytes) -> bytes:
        msg = self.session.encrypt(pt)
        if self.got_reply:
            return msg
        b = self.b
        out = bytes([VERSION_V2, TYPE_PREKEY]) + self.ik.ed_pub + self.ek_pub + u32be(b["spk_id"])
        out += b"\x00" if b["opk_id"] is None else b"\x01" + u32be(b["opk_id"])
        return out + u32be(b["kem_id"]) + self.ct + msg

    def receive(self, wire: bytes) -> bytes:
        header, ct = parse_message(wire, VERSION_V2)
        work = copy.deepcopy(self.session)
        pt = work.decrypt_inplace(header, ct, self.rng)
        self.session = work
        self.got_reply = True
        return pt


class BobV2:
    """The responder of a bundle vector, holding all its prekeys; deletes
    the one-time ones after the first message that used them decrypts."""

    def __init__(self, owner: Owner, rng: ListRng):
        self.owner, self.rng = owner, rng
        self.opks = {} if owner.opk_id is None else {owner.opk_id: owner.opk_priv}
        self.kems = {owner.kem_id: owner.dk}
        self.sessions: dict = {}
        self.current = None

    def send(self, pt: bytes) -> bytes:
        if self.current is None:
            raise ProtocolError("Bob has no session to send with")
        return self.sessions[self.current].encrypt(pt)

    def receive(self, wire: bytes) -> bytes:
        if len(wire) >= 2 and wire[1] == TYPE_PREKEY:
            ik_a, ek_a, spk_id, opk_id, kem_id, ct, header, ctext = parse_prekey_v2(wire)
            key = (ik_a, ek_a)
            if key in self.sessions:
                work = copy.deepcopy(self.sessions[key])
                pt = work.decrypt_inplace(header, ctext, self.rng)
                self.sessions[key], self.current = work, key
                return pt
            if spk_id != self.owner.spk_id:
                raise Refused("unknown_signed_prekey")
            if opk_id is not None and opk_id not in self.opks:
                raise Refused("unknown_one_time_prekey")
            if kem_id not in self.kems:
                raise Refused("unknown_kem_prekey")
            sk, ad = pqxdh_responder(self.owner, self.opks.get(opk_id) if opk_id is not None
                                     else None, ik_a, ek_a, ct)
            work = Ratchet.init_bob(sk, ad, self.owner.spk_priv)
            work.version = VERSION_V2
            try:
                pt = work.decrypt_inplace(header, ctext, self.rng)
            except AuthError as e:
                raise Refused("authentication_failed") from e
            self.sessions[key], self.current = work, key
            if opk_id is not None:
                del self.opks[opk_id]
            if self.owner.kem_one_time:
                del self.kems[kem_id]
            return pt
        header, ctext = parse_message(wire, VERSION_V2)
        last_err: Exception = ProtocolError("no session matches")
        for key, sess in self.sessions.items():
            work = copy.deepcopy(sess)
            try:
                pt = work.decrypt_inplace(header, ctext, self.rng)
            except ProtocolError as e:
                last_err = e
                continue
            self.sessions[key], self.current = work, key
            return pt
        raise last_err


def check_v2_bundle(c: Checker, i: int, e: dict):
    tag = f"bundles[{i}]"
    missing = [f for f in V2_BUNDLE_FIELDS if f not in e]
    if not c.check(not missing, f"{tag}: missing fields {missing}"):
        return
    c.check(e["versions"] in (0x02, 0x03), f"{tag}: versions {e['versions']}")
    c.check(e["kem_prekey_kind"] in ("one_time", "last_resort"), f"{tag}: kem_prekey_kind")
    owner = Owner(e)
    b = owner.bundle()
    c.eq(b["sig"], e["signed_prekey_signature"], f"{tag} signed_prekey_signature")
    c.eq(owner.ek, e["kem_encapsulation_key"], f"{tag} kem_encapsulation_key (KeyGen from seed)")
    c.eq(b["kem_sig"], e["kem_prekey_signature"], f"{tag} kem_prekey_signature")
    enc = encode_bundle_v2(b)
    c.eq(enc, e["encoding"], f"{tag} encoding")
    c.eq(len(enc), 1387 if owner.opk_id is None else 1423, f"{tag} encoding length")
    c.eq(outcome(bundle_refusal, hx(e["encoding"])), None, f"{tag} encoding refused")
    if outcome(decode_bundle, hx(e["encoding"])) is None:
        c.check(decode_bundle(hx(e["encoding"])) == b, f"{tag}: encoding decodes to other fields")


def check_v2_pqxdh(c: Checker, i: int, e: dict, bundles: list):
    tag = f"pqxdh[{i}]"
    missing = [f for f in V2_PQXDH_FIELDS if f not in e]
    if not c.check(not missing, f"{tag}: missing fields {missing}"):
        return
    if not c.check(0 <= e["bundle"] < len(bundles), f"{tag}: bad bundle index"):
        return
    owner = Owner(bundles[e["bundle"]])
    ik_a = Identity(hx(e["alice_identity_seed"]))
    ek_priv = hx(e["alice_ephemeral_private"])
    try:
        sk, ad, ct, ss = pqxdh_initiator(ik_a, ek_priv, hx(e["kem_message"]), owner.bundle())
        c.eq(ct, e["kem_ciphertext"], f"{tag} kem_ciphertext (Encaps with m)")
        c.eq(ss, e["kem_shared_secret"], f"{tag} kem_shared_secret (initiator)")
        c.eq(sk, e["shared_secret"], f"{tag} shared_secret (initiator)")
        c.eq(ad, e["associated_data"], f"{tag} associated_data")
    except ProtocolError as ex:
        c.check(False, f"{tag} initiator failed: {ex}")
    ct = hx(e["kem_ciphertext"])
    c.eq(kem_decaps(owner.dk, ct), e["kem_shared_secret"], f"{tag} kem_shared_secret (Decaps)")
    try:
        sk_b, ad_b = pqxdh_responder(owner, owner.opk_priv, ik_a.ed_pub, x25519_pub(ek_priv), ct)
        c.eq(sk_b, e["shared_secret"], f"{tag} shared_secret (responder)")
        c.eq(ad_b, e["associated_data"], f"{tag} associated_data (responder)")
    except ProtocolError as ex:
        c.check(False, f"{tag} responder failed: {ex}")


def check_v2_session(c: Checker, i: int, s: dict, data: dict):
    tag = f"sessions[{i}]"
    missing = [f for f in ["description", "pqxdh", "alice_ratchet_privates",
                           "bob_ratchet_privates", "events"] if f not in s]
    if not c.check(not missing, f"{tag}: missing fields {missing}"):
        return
    if not c.check(0 <= s["pqxdh"] < len(data["pqxdh"]), f"{tag}: bad pqxdh index"):
        return
    e = data["pqxdh"][s["pqxdh"]]
    owner = Owner(data["bundles"][e["bundle"]])
    rng_a = ListRng("alice", [hx(k) for k in s["alice_ratchet_privates"]])
    rng_b = ListRng("bob", [hx(k) for k in s["bob_ratchet_privates"]])
    try:
        alice = AliceV2(Identity(hx(e["alice_identity_seed"])), hx(e["alice_ephemeral_private"]),
                        hx(e["kem_message"]), owner.bundle(), rng_a)
    except ProtocolError as ex:
        c.check(False, f"{tag} alice initialisation failed: {ex}")
        return
    run_events(c, tag, s["events"], {"alice": alice, "bob": BobV2(owner, rng_b)})
    c.eq(rng_a.pos, len(rng_a.keys), f"{tag} alice_ratchet_privates consumed")
    c.eq(rng_b.pos, len(rng_b.keys), f"{tag} bob_ratchet_privates consumed")


def bundle_refusal(data: bytes):
    verify_bundle(decode_bundle(data))


def first_message_refusal(owner: Owner, wire: bytes):
    # A refused first message may draw Bob's ratchet key: any key will do.
    BobV2(owner, ListRng("bob", [bytes(32)])).receive(wire)


def check_v2(c: Checker, data: dict):
    bundles, pqxdh = data.get("bundles", []), data.get("pqxdh", [])
    for i, e in enumerate(bundles):
        check_v2_bundle(c, i, e)
    for i, e in enumerate(pqxdh):
        check_v2_pqxdh(c, i, e, bundles)
    for i, s in enumerate(data.get("sessions", [])):
        check_v2_session(c, i, s, data)
    for i, e in enumerate(data.get("invalid_bundles", [])):
        c.eq(outcome(bundle_refusal, hx(e["encoding"])), e["error"],
             f"invalid_bundles[{i}] ({e['description']}) refusal")
    for i, e in enumerate(data.get("invalid_prekey_messages", [])):
        owner = Owner(bundles[pqxdh[e["pqxdh"]]["bundle"]])
        c.eq(outcome(first_message_refusal, owner, hx(e["wire"])), e["error"],
             f"invalid_prekey_messages[{i}] ({e['description']}) refusal")


def explain_wire_diff(got: bytes, want: bytes, etag: str):
    if len(got) != len(want):
        print(f"    {etag}: length computed {len(got)} file {len(want)}")
    for idx, (a, b) in enumerate(zip(got, want)):
        if a != b:
            print(f"    {etag}: first differing byte at offset {idx}")
            break


def main(argv):
    path = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "v1.json")
    with open(path) as f:
        data = json.load(f)
    c = Checker()
    if data.get("version") == 2:
        check_hex_lower(c, data, "$")
        check_v2(c, data)
        print(f"conformance: {c.n} checks, {c.failed} failed")
        return 1 if c.failed else 0
    c.eq(data.get("version"), 1, "version")
    check_hex_lower(c, data, "$")
    x3dh = data.get("x3dh", [])
    for i, e in enumerate(x3dh):
        check_x3dh(c, i, e)
    for i, s in enumerate(data.get("sessions", [])):
        check_session(c, i, s, x3dh)
    for i, e in enumerate(data.get("sealed", [])):
        check_sealed(c, i, e)
    c.check("devices" in data, "devices section missing")
    check_devices(c, data.get("devices", {}))
    c.check("detached_bodies" in data, "detached_bodies section missing")
    check_detached_bodies(c, data.get("detached_bodies", []))
    c.check("groups" in data, "groups section missing")
    check_groups(c, data.get("groups", []))
    if c.check("group_membership" in data, "group_membership section missing"):
        check_group_membership(c, data["group_membership"])
    for i, p in enumerate(data.get("padding", [])):
        c.eq(padded_len(p["length"] + 1), p["padded_length"], f"padding[{i}] (length {p['length']}) padded_length")
    # Self-checks of the padding round trip at a few of the listed lengths.
    for p in data.get("padding", []):
        n = p["length"]
        if n <= 70000:
            buf = pad(bytes([0xAB]) * n)
            c.check(len(buf) == padded_len(n + 1) and unpad(buf) == bytes([0xAB]) * n,
                    f"padding round trip for length {n}")
    print(f"conformance: {c.n} checks, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
