// Text with holes: constant parts around per-use values. A policy revision is serialized once into one
// of these; each agent's answer only fills in its id and keys. Edges that encode the text (gzip) can
// cache work per template, because the parts never change.
export class TextTemplate {
  /** parts.length === holes + 1 */
  constructor(readonly parts: readonly string[]) {}

  get holes(): number {
    return this.parts.length - 1;
  }

  render(values: readonly string[]): string {
    let out = this.parts[0]!;
    for (let i = 0; i < values.length; i++) out += values[i]! + this.parts[i + 1]!;
    return out;
  }
}

/** A filled-in template, framed by a per-use head and tail. */
export interface FilledTemplate {
  head: string;
  template: TextTemplate;
  values: readonly string[];
  tail: string;
}

export function renderFilled(f: FilledTemplate): string {
  return f.head + f.template.render(f.values) + f.tail;
}
