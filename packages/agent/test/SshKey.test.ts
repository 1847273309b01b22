import { describe, expect, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { openSshEd25519PublicKey, openSshEd25519Seed, privateKeyFrom } from "../src/support/sshKey.js"

const fixture = (name: string) => Fs.readFileSync(Path.join(__dirname, "fixtures/ssh", name), "utf8")

describe("OpenSSH host keys", () => {
  it("an ssh-keygen ed25519 key becomes a PKCS#8 key whose public half is the .pub key", () => {
    const key = privateKeyFrom(fixture("ssh_host_ed25519_key"))
    expect(key.asymmetricKeyType).toBe("ed25519")
    const pub = openSshEd25519PublicKey(fixture("ssh_host_ed25519_key.pub"))
    const spki = Crypto.createPublicKey(key).export({ format: "der", type: "spki" })
    expect(Buffer.from(spki.subarray(spki.length - 32))).toStrictEqual(pub)
    const signature = Crypto.sign(null, Buffer.from("hello"), key)
    const publicKey = Crypto.createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: pub.toString("base64url") },
      format: "jwk"
    })
    expect(Crypto.verify(null, Buffer.from("hello"), publicKey, signature)).toBe(true)
  })

  it("refuses an encrypted key, an RSA key and garbage with a clear reason", () => {
    expect(() => openSshEd25519Seed(fixture("encrypted_ed25519_key"))).toThrow(/encrypted/)
    expect(() => openSshEd25519Seed(fixture("ssh_host_rsa_key"))).toThrow(/expected an ssh-ed25519 key, got ssh-rsa/)
    expect(() =>
      openSshEd25519Seed("-----BEGIN OPENSSH PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END OPENSSH PRIVATE KEY-----")
    )
      .toThrow(/not an openssh-key-v1 key/)
    expect(() => openSshEd25519PublicKey("ssh-rsa AAAA x")).toThrow(/not an ssh-ed25519 public key line/)
  })

  it("PEM keys pass as they are", () => {
    const { privateKey } = Crypto.generateKeyPairSync("ec", { namedCurve: "P-256" })
    const pem = privateKey.export({ format: "pem", type: "pkcs8" }).toString()
    expect(privateKeyFrom(pem).asymmetricKeyType).toBe("ec")
  })
})
