/**
 * Strings in UTF-16 code unit order, as `<` compares them. twilld sorts to
 * be deterministic (instance keys, rule order, BIRD's config, messages),
 * never for a reader's alphabet: localeCompare does the same job through
 * ICU's collation tables, ~2 MB of ICU data paged into the agent for good
 * the first time it runs.
 */
export function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
