import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { TenantryError } from '../../errors.js';

/**
 * Authenticated encryption of a backup archive, streamed: the STREAM construction that age and
 * Tink use, with AES-256-GCM. The plaintext is cut into segments of 64 KiB; each is sealed on its
 * own with a nonce made of its number and a flag set only on the last one, under a key derived
 * for this file from the backup key and a random salt. So memory stays at one segment, a changed
 * byte fails its segment's tag, segments cannot be reordered or dropped, and an archive cut at a
 * segment boundary fails too (its new last segment was not sealed as the last).
 *
 *   file = MAGIC (8 bytes) || salt (16 bytes) || segment* ; segment = ciphertext || tag (16 bytes)
 */
export const ENCRYPTED_MAGIC = Buffer.from('TNYENC01', 'latin1');
const SALT_BYTES = 16;
const HEADER_BYTES = ENCRYPTED_MAGIC.length + SALT_BYTES;
export const SEGMENT_BYTES = 64 * 1024;
const TAG_BYTES = 16;
const INFO = Buffer.from('tenantry backup archive v1', 'latin1');

/** The variable the backup key is read from. */
export const BACKUP_KEY_VARIABLE = 'TENANTRY_BACKUP_KEY';

/**
 * The 32-byte backup key from its text: 64 hexadecimal digits, or base64 / base64url of 32 bytes
 * (`openssl rand -base64 32`). Anything else is refused, naming the variable.
 */
export function parseBackupKey(text: string, source = BACKUP_KEY_VARIABLE): Buffer {
  const trimmed = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(trimmed)
    ? Buffer.from(trimmed, 'hex')
    : /^[A-Za-z0-9+/_-]{43}=?$/.test(trimmed)
      ? Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
      : undefined;
  if (key?.length !== 32) {
    throw new TenantryError(
      'validation_failed',
      `${source} must be 32 random bytes as 64 hex digits or base64 (openssl rand -base64 32)`,
      { field: source },
    );
  }
  return key;
}

/** Whether `head` (the first bytes of a file) starts an encrypted archive. */
export function isEncryptedArchive(head: Buffer): boolean {
  return (
    head.length >= ENCRYPTED_MAGIC.length && head.subarray(0, ENCRYPTED_MAGIC.length).equals(ENCRYPTED_MAGIC)
  );
}

function fileKey(key: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', key, salt, INFO, 32));
}

function nonce(counter: number, last: boolean): Buffer {
  const value = Buffer.alloc(12);
  // 11 bytes of counter, big-endian; 2^48 segments of 64 KiB is more than any archive.
  value.writeUIntBE(counter, 5, 6);
  value[11] = last ? 1 : 0;
  return value;
}

/** Encrypts a stream into the format above. */
export class ArchiveEncryptor extends Transform {
  readonly #key: Buffer;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #counter = 0;

  constructor(key: Buffer) {
    super();
    const salt = randomBytes(SALT_BYTES);
    this.#key = fileKey(key, salt);
    this.push(Buffer.concat([ENCRYPTED_MAGIC, salt]));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    // A full segment is sealed only when more follows: the last one must carry the flag.
    while (this.#pendingBytes > SEGMENT_BYTES) {
      const all = Buffer.concat(this.#pending);
      this.push(this.#seal(all.subarray(0, SEGMENT_BYTES), false));
      const rest = all.subarray(SEGMENT_BYTES);
      this.#pending = [rest];
      this.#pendingBytes = rest.length;
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    this.push(this.#seal(Buffer.concat(this.#pending), true));
    done();
  }

  #seal(plaintext: Buffer, last: boolean): Buffer {
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce(this.#counter, last));
    this.#counter += 1;
    return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  }
}

/** Decrypts the format above; any change, cut or wrong key fails with a clear error. */
export class ArchiveDecryptor extends Transform {
  readonly #key: Buffer;
  #fileKey: Buffer | undefined;
  #buffer: Buffer = Buffer.alloc(0);
  #counter = 0;

  constructor(key: Buffer) {
    super();
    this.#key = key;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    try {
      if (!this.#fileKey) {
        if (this.#buffer.length < HEADER_BYTES) {
          done();
          return;
        }
        if (!isEncryptedArchive(this.#buffer)) throw archiveError('it is not an encrypted Tenantry archive');
        this.#fileKey = fileKey(this.#key, this.#buffer.subarray(ENCRYPTED_MAGIC.length, HEADER_BYTES));
        this.#buffer = this.#buffer.subarray(HEADER_BYTES);
      }
      const sealed = SEGMENT_BYTES + TAG_BYTES;
      // Keep the last segment back until the stream ends: only then is it known to be the last.
      while (this.#buffer.length > sealed) {
        this.push(this.#open(this.#buffer.subarray(0, sealed), false));
        this.#buffer = this.#buffer.subarray(sealed);
      }
      done();
    } catch (error) {
      done(error as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      if (!this.#fileKey) throw archiveError('it ends before its encryption header');
      if (this.#buffer.length < TAG_BYTES)
        throw archiveError('it is cut short (its last segment is missing)');
      this.push(this.#open(this.#buffer, true));
      done();
    } catch (error) {
      done(error as Error);
    }
  }

  #open(sealed: Buffer, last: boolean): Buffer {
    const decipher = createDecipheriv('aes-256-gcm', this.#fileKey!, nonce(this.#counter, last));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const number = this.#counter;
    this.#counter += 1;
    try {
      return Buffer.concat([
        decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch {
      throw archiveError(
        number === 0
          ? `it does not decrypt with this ${BACKUP_KEY_VARIABLE} (wrong key, or a changed archive)`
          : `segment ${number} fails its authentication: the archive was changed or cut short`,
      );
    }
  }
}

/** A refusal of an archive; `what` says what is wrong with it. */
export function archiveError(what: string): TenantryError {
  return new TenantryError('validation_failed', `the archive is refused: ${what}`, { field: 'archive' });
}

/** The key given, else `TENANTRY_BACKUP_KEY` of the environment, else none (an unencrypted archive). */
export function backupKey(
  given: string | undefined,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Buffer | undefined {
  const text = given ?? env[BACKUP_KEY_VARIABLE];
  return text === undefined || text === '' ? undefined : parseBackupKey(text);
}
