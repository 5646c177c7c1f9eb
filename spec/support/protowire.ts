// A minimal protobuf wire encoder and decoder, written for the tests from the encoding rules (varints,
// length-delimited fields, fixed64), so the simulated Collector checks the server's field numbers
// against the facts instead of sharing the server's generated code.

export class PbWriter {
  private readonly parts: Buffer[] = [];

  private varint(n: bigint): void {
    const out: number[] = [];
    let v = BigInt.asUintN(64, n);
    do {
      let b = Number(v & 0x7fn);
      v >>= 7n;
      if (v > 0n) b |= 0x80;
      out.push(b);
    } while (v > 0n);
    this.parts.push(Buffer.from(out));
  }

  private tag(field: number, wire: number): void {
    this.varint(BigInt((field << 3) | wire));
  }

  /** `always`: written even when 0 (a oneof member's presence). */
  uint(field: number, n: number | bigint, always = false): this {
    if (BigInt(n) === 0n && !always) return this;
    this.tag(field, 0);
    this.varint(BigInt(n));
    return this;
  }

  bool(field: number, b: boolean): this {
    return b ? this.uint(field, 1) : this;
  }

  fixed64(field: number, n: bigint): this {
    if (n === 0n) return this;
    this.tag(field, 1);
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(n);
    this.parts.push(b);
    return this;
  }

  double(field: number, d: number): this {
    this.tag(field, 1);
    const b = Buffer.alloc(8);
    b.writeDoubleLE(d);
    this.parts.push(b);
    return this;
  }

  bytes(field: number, data: Uint8Array | string): this {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
    this.tag(field, 2);
    this.varint(BigInt(buf.length));
    this.parts.push(buf);
    return this;
  }

  string(field: number, s: string): this {
    return s === '' ? this : this.bytes(field, s);
  }

  /** A sub-message, present even when empty. */
  message(field: number, w: PbWriter): this {
    return this.bytes(field, w.finish());
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

export interface PbField {
  field: number;
  wire: number;
  /** Varints and fixed64 as bigint; length-delimited as bytes. */
  value: bigint | Buffer;
}

/** Every field of a message, in order; throws on truncated input. */
export function pbFields(buf: Buffer): PbField[] {
  const out: PbField[] = [];
  let i = 0;
  const varint = (): bigint => {
    let shift = 0n;
    let v = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++]!;
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const field = key >> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ field, wire, value: varint() });
    else if (wire === 1) {
      if (i + 8 > buf.length) throw new Error('truncated fixed64');
      out.push({ field, wire, value: buf.readBigUInt64LE(i) });
      i += 8;
    } else if (wire === 2) {
      const n = Number(varint());
      if (i + n > buf.length) throw new Error('truncated bytes');
      out.push({ field, wire, value: buf.subarray(i, i + n) });
      i += n;
    } else if (wire === 5) {
      i += 4;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
  return out;
}

/** The last value of a field (protobuf's rule for singular fields). */
export function pbGet(fields: PbField[], field: number): bigint | Buffer | undefined {
  let v: bigint | Buffer | undefined;
  for (const f of fields) if (f.field === field) v = f.value;
  return v;
}

export function pbAll(fields: PbField[], field: number): (bigint | Buffer)[] {
  return fields.filter((f) => f.field === field).map((f) => f.value);
}
