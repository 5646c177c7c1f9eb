// google.protobuf.Struct ↔ plain JSON. Unit configs arrive as Structs (numbers are doubles), and the
// bootstrap payload goes back as one.
import { google } from './generated/control';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export function fromValue(v: google.protobuf.IValue | null | undefined): Json {
  if (!v) return null;
  if (v.structValue) return fromStruct(v.structValue);
  if (v.listValue) return (v.listValue.values ?? []).map(fromValue);
  if (v.stringValue !== undefined && v.stringValue !== null) return v.stringValue;
  if (v.numberValue !== undefined && v.numberValue !== null) return v.numberValue;
  if (v.boolValue !== undefined && v.boolValue !== null) return v.boolValue;
  return null;
}

export function fromStruct(s: google.protobuf.IStruct | null | undefined): { [k: string]: Json } {
  const out: { [k: string]: Json } = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = fromValue(v);
  return out;
}

export function toValue(j: unknown): google.protobuf.IValue {
  if (j === null || j === undefined) return { nullValue: google.protobuf.NullValue.NULL_VALUE };
  if (typeof j === 'string') return { stringValue: j };
  if (typeof j === 'number') return { numberValue: j };
  if (typeof j === 'boolean') return { boolValue: j };
  if (Array.isArray(j)) return { listValue: { values: j.map(toValue) } };
  return { structValue: toStruct(j as Record<string, unknown>) };
}

export function toStruct(o: Record<string, unknown>): google.protobuf.IStruct {
  const fields: Record<string, google.protobuf.IValue> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) fields[k] = toValue(v);
  return { fields };
}
