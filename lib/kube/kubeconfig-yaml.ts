/**
 * The part of YAML that kubeconfig files use, parsed without a YAML library
 * (the daemon ships none: js-yaml is a development dependency only).
 *
 * Accepted: block mappings and block sequences (a sequence may sit at its
 * key's indentation, as kubectl writes it, or deeper), plain, 'single' and
 * "double" quoted scalars on one line, `{}` and `[]`, comments, and a
 * leading `---`. A file whose first character is `{` is read as JSON.
 * Plain scalars stay strings except `true`/`false` and `null`/`~`/empty.
 *
 * Refused, with the line and the key path: block scalars (`|`, `>`),
 * non-empty flow collections, anchors, aliases, tags, tabs in indentation,
 * values continued on the next line, several documents, duplicate keys.
 */
import { KubeConfigError } from './errors';

export type YamlValue = string | boolean | null | YamlValue[] | { [key: string]: YamlValue };

interface Line {
  readonly no: number;
  readonly indent: number;
  readonly text: string;
}

export function parseKubeconfigYaml(source: string, file: string): YamlValue {
  const body = source.replace(/^\uFEFF/, '');
  if (body.trimStart().startsWith('{')) {
    try {
      return JSON.parse(body) as YamlValue;
    } catch (err) {
      throw new KubeConfigError(`${file}: not valid JSON: ${(err as Error).message}`);
    }
  }
  return new Parser(toLines(body, file), file).document();
}

function toLines(source: string, file: string): Line[] {
  const out: Line[] = [];
  let started = false;
  source.split(/\r?\n/).forEach((raw, i) => {
    const no = i + 1;
    const lead = /^[ \t]*/.exec(raw)![0];
    const text = stripComment(raw.slice(lead.length)).trimEnd();
    if (text === '') return;
    if (lead.includes('\t')) throw new KubeConfigError(`${file}: line ${no}: a tab in the indentation; YAML indents with spaces only`);
    if (lead.length === 0 && (text === '---' || text.startsWith('--- ') || text === '...')) {
      if (started) throw new KubeConfigError(`${file}: line ${no}: a second YAML document; a kubeconfig is one document`);
      return;
    }
    if (lead.length === 0 && text.startsWith('%')) throw new KubeConfigError(`${file}: line ${no}: YAML directives (${text.split(' ')[0]}) are not supported`);
    started = true;
    out.push({ no, indent: lead.length, text });
  });
  return out;
}

/** Drops a `#` comment: at the start, or after a space, outside quotes. */
function stripComment(text: string): string {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") {
      // A quote opens a quoted scalar only at the start of a value.
      const before = text.slice(0, i).trimEnd();
      if (before === '' || before.endsWith(':') || before.endsWith('-')) quote = c;
    } else if (c === '#' && (i === 0 || text[i - 1] === ' ')) {
      return text.slice(0, i);
    }
  }
  return text;
}

class Parser {
  private pos = 0;

  constructor(private readonly lines: Line[], private readonly file: string) {}

  document(): YamlValue {
    if (this.lines.length === 0) return null;
    const first = this.lines[0];
    const value = this.block(first.indent, '');
    const rest = this.lines[this.pos];
    if (rest) throw this.error(rest, '', `unexpected indentation (${rest.indent} spaces) after the top-level ${Array.isArray(value) ? 'list' : 'mapping'}`);
    return value;
  }

  private block(indent: number, path: string): YamlValue {
    const line = this.lines[this.pos];
    return isSequenceItem(line.text) ? this.sequence(indent, path) : this.mapping(indent, path);
  }

  private mapping(indent: number, path: string): { [key: string]: YamlValue } {
    const out: { [key: string]: YamlValue } = {};
    while (this.pos < this.lines.length) {
      const line = this.lines[this.pos];
      if (line.indent < indent) break;
      if (line.indent > indent) throw this.error(line, path, 'a value continued on the next line, or wrong indentation; write each value on one line');
      if (isSequenceItem(line.text)) throw this.error(line, path, 'a list item where a "key: value" line was expected');
      const { key, rest } = this.splitKey(line, path);
      const keyPath = path ? `${path}.${key}` : key;
      if (Object.prototype.hasOwnProperty.call(out, key)) throw this.error(line, keyPath, 'the key appears twice');
      this.pos++;
      out[key] = rest === '' ? this.nested(indent, keyPath) : this.scalar(rest, line, keyPath);
    }
    return out;
  }

  /** The value of `key:` with nothing after the colon: a deeper block, a list at the key's own indentation, or null. */
  private nested(indent: number, path: string): YamlValue {
    const next = this.lines[this.pos];
    if (!next) return null;
    if (next.indent > indent) return this.block(next.indent, path);
    if (next.indent === indent && isSequenceItem(next.text)) return this.sequence(indent, path);
    return null;
  }

  private sequence(indent: number, path: string): YamlValue[] {
    const out: YamlValue[] = [];
    while (this.pos < this.lines.length) {
      const line = this.lines[this.pos];
      if (line.indent !== indent || !isSequenceItem(line.text)) {
        if (line.indent > indent) throw this.error(line, path, 'wrong indentation inside a list');
        break;
      }
      const itemPath = `${path}[${out.length}]`;
      const content = line.text.slice(1).replace(/^ +/, '');
      if (content === '') {
        this.pos++;
        const next = this.lines[this.pos];
        out.push(next && next.indent > indent ? this.block(next.indent, itemPath) : null);
        continue;
      }
      const innerIndent = indent + (line.text.length - content.length);
      if (isSequenceItem(content) || looksLikeKey(content)) {
        // "- name: x": the item is a block that starts on this line, indented where its text starts.
        this.lines[this.pos] = { no: line.no, indent: innerIndent, text: content };
        out.push(this.block(innerIndent, itemPath));
      } else {
        this.pos++;
        out.push(this.scalar(content, line, itemPath));
      }
    }
    return out;
  }

  private splitKey(line: Line, path: string): { key: string; rest: string } {
    const t = line.text;
    if (t.startsWith('"') || t.startsWith("'")) {
      const end = closingQuote(t, t[0]);
      if (end < 0 || t[end + 1] !== ':') throw this.error(line, path, 'a quoted key must be followed by ":"');
      const key = this.scalar(t.slice(0, end + 1), line, path);
      return { key: String(key), rest: t.slice(end + 2).trim() };
    }
    const m = /^([^:]*?[^\s:]|[^\s:]):(?: +(.*))?$/.exec(t) ?? /^([^:]*?):(?: +(.*))?$/.exec(t);
    if (!m || /[{}[\],&*!|>%@`]/.test(m[1][0])) throw this.error(line, path, `expected "key: value", found ${JSON.stringify(t.slice(0, 40))}`);
    return { key: m[1], rest: (m[2] ?? '').trim() };
  }

  private scalar(text: string, line: Line, path: string): YamlValue {
    const c = text[0];
    if (c === '"') {
      if (closingQuote(text, '"') !== text.length - 1) throw this.error(line, path, 'a double-quoted value must end on the same line with its closing quote');
      try {
        return JSON.parse(text) as string;
      } catch {
        throw this.error(line, path, 'a double-quoted value with an escape JSON does not know (only \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX are supported)');
      }
    }
    if (c === "'") {
      if (closingQuote(text, "'") !== text.length - 1) throw this.error(line, path, 'a single-quoted value must end on the same line with its closing quote');
      return text.slice(1, -1).replace(/''/g, "'");
    }
    if (text === '{}') return {};
    if (text === '[]') return [];
    if (c === '|' || c === '>') throw this.error(line, path, `block scalars ("${c}") are not supported; write the value on one line, quoted if needed`);
    if (c === '{' || c === '[') throw this.error(line, path, 'flow collections ({...} or [...]) other than {} and [] are not supported; use block style');
    if (c === '&' || c === '*') throw this.error(line, path, 'anchors and aliases (& and *) are not supported');
    if (c === '!') throw this.error(line, path, 'tags (!) are not supported');
    if (c === '@' || c === '`') throw this.error(line, path, `a plain value cannot start with "${c}"; quote it`);
    const next = this.lines[this.pos];
    if (next && next.indent > line.indent && !looksLikeKey(next.text) && !isSequenceItem(next.text)) {
      throw this.error(next, path, 'a value continued on the next line; write each value on one line');
    }
    if (text === 'null' || text === '~' || text === 'Null' || text === 'NULL') return null;
    if (text === 'true' || text === 'True' || text === 'TRUE') return true;
    if (text === 'false' || text === 'False' || text === 'FALSE') return false;
    return text;
  }

  private error(line: Line, path: string, what: string): KubeConfigError {
    return new KubeConfigError(`${this.file}: line ${line.no}${path ? ` (${path})` : ''}: ${what}`);
  }
}

function isSequenceItem(text: string): boolean {
  return text === '-' || text.startsWith('- ');
}

function looksLikeKey(text: string): boolean {
  if (text.startsWith('"') || text.startsWith("'")) {
    const end = closingQuote(text, text[0]);
    return end > 0 && text[end + 1] === ':' && (text.length === end + 2 || text[end + 2] === ' ');
  }
  return /^[^\s{[\]},&*!|>%@`'"#][^:]*:( |$)/.test(text);
}

/** Index of the quote that closes the quoted scalar starting at 0, or -1. */
function closingQuote(text: string, quote: string): number {
  for (let i = 1; i < text.length; i++) {
    if (quote === '"' && text[i] === '\\') {
      i++;
    } else if (text[i] === quote) {
      if (quote === "'" && text[i + 1] === "'") i++;
      else return i;
    }
  }
  return -1;
}
