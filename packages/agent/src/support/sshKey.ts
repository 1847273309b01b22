import * as Crypto from "node:crypto"

/**
 * The host's OpenSSH ed25519 key, read without any SSH tooling.
 *
 * The unencrypted `openssh-key-v1` container: magic, cipher "none", kdf "none", one key,
 * the public blob, then a private section (two equal check words, "ssh-ed25519", the 32-byte
 * public key, the 64-byte seed‖public, a comment, padding).
 *
 * @internal
 */
class Reader {
  private offset = 0
  constructor(private readonly bytes: Buffer) {}
  uint32(): number {
    if (this.offset + 4 > this.bytes.length) throw new Error("truncated key")
    const value = this.bytes.readUInt32BE(this.offset)
    this.offset += 4
    return value
  }
  string(): Buffer {
    const length = this.uint32()
    if (this.offset + length > this.bytes.length) throw new Error("truncated key")
    const value = this.bytes.subarray(this.offset, this.offset + length)
    this.offset += length
    return value
  }
}

const MAGIC = Buffer.from("openssh-key-v1\0", "latin1")
/** DER prefix of a PKCS#8 ed25519 private key; the 32-byte seed follows. */
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex")

/** @internal */
export const isOpenSshPrivateKey = (text: string): boolean => text.includes("-----BEGIN OPENSSH PRIVATE KEY-----")

/**
 * The 32-byte ed25519 seed of an unencrypted OpenSSH private key. Throws with a clear
 * message for anything else (encrypted keys, other key types, garbage).
 *
 * @internal
 */
export const openSshEd25519Seed = (text: string): Buffer => {
  const body = text.replace(/-----(BEGIN|END) OPENSSH PRIVATE KEY-----/g, "").replace(/\s+/g, "")
  const bytes = Buffer.from(body, "base64")
  if (!bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error("not an openssh-key-v1 key")
  const reader = new Reader(bytes.subarray(MAGIC.length))
  const cipher = reader.string().toString()
  const kdf = reader.string().toString()
  reader.string()
  if (cipher !== "none" || kdf !== "none") {
    throw new Error("the key is encrypted; the agent needs an unencrypted host key")
  }
  if (reader.uint32() !== 1) throw new Error("expected exactly one key")
  reader.string()
  const secret = new Reader(reader.string())
  if (secret.uint32() !== secret.uint32()) throw new Error("corrupt key (check words differ)")
  const type = secret.string().toString()
  if (type !== "ssh-ed25519") throw new Error(`expected an ssh-ed25519 key, got ${type}`)
  const publicKey = secret.string()
  const pair = secret.string()
  if (publicKey.length !== 32 || pair.length !== 64) throw new Error("corrupt ed25519 key")
  return Buffer.from(pair.subarray(0, 32))
}

/**
 * A private key usable by Node's TLS and crypto: an OpenSSH ed25519 key is converted to
 * PKCS#8 in memory (the key never touches the disk in another form); PEM keys pass as they are.
 *
 * @internal
 */
export const privateKeyFrom = (text: string): Crypto.KeyObject =>
  isOpenSshPrivateKey(text)
    ? Crypto.createPrivateKey({
      key: Buffer.concat([PKCS8_ED25519_PREFIX, openSshEd25519Seed(text)]),
      format: "der",
      type: "pkcs8"
    })
    : Crypto.createPrivateKey(text)

/**
 * The raw 32-byte ed25519 public key of an OpenSSH public key line
 * (`ssh-ed25519 <base64> [comment]`).
 *
 * @internal
 */
export const openSshEd25519PublicKey = (line: string): Buffer => {
  const [type, blob] = line.trim().split(/\s+/)
  if (type !== "ssh-ed25519" || blob === undefined) throw new Error("not an ssh-ed25519 public key line")
  const reader = new Reader(Buffer.from(blob, "base64"))
  if (reader.string().toString() !== "ssh-ed25519") throw new Error("corrupt ssh-ed25519 public key")
  const key = reader.string()
  if (key.length !== 32) throw new Error("corrupt ssh-ed25519 public key")
  return Buffer.from(key)
}
