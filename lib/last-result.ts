/**
 * One remembered result and the inputs it was computed from. A repair
 * every few seconds re-plans from inputs that almost never change; with
 * thousands of peers each re-plan allocates megabytes that V8 promotes and
 * collects later. `get` recomputes only when an input differs.
 *
 * Inputs compare by identity, and an array input element by element (also
 * by identity): the lease table replaces a Lease object when its lease
 * changes, so a list of the same objects is the same leases.
 */
export class LastResult<T> {
  private inputs?: readonly unknown[];
  private value?: T;

  get(inputs: readonly unknown[], compute: () => T): T {
    if (this.inputs && sameInputs(this.inputs, inputs)) return this.value as T;
    const value = compute();
    this.inputs = inputs;
    this.value = value;
    return value;
  }

  /** Forgets the result, so the next `get` computes. */
  clear(): void {
    this.inputs = undefined;
    this.value = undefined;
  }
}

/** The rule LastResult recomputes by: the same objects, an array input element by element. */
export function sameInputs(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => sameInput(x, b[i]));
}

function sameInput(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
