import { describeValue, LockKeys } from '../engine/lock-key.validator';
import { parseParameterNames } from './parameter-names.parser';

/** The key argument of `@Locked`: a template, several templates, or a function of the arguments. */
export type LockedKey =
  string | readonly string[] | ((...args: never[]) => string | readonly string[]);

/** Turns a method's arguments into its lock key(s). */
export type KeyResolver = (args: readonly unknown[]) => LockKeys;

interface Placeholder {
  readonly label: string;
  readonly index: number;
  readonly path: readonly string[];
}

type Part = string | Placeholder;

/** Characters left as they are in a key built from an argument; every other one is %-escaped. */
const SAFE = /[A-Za-z0-9_.-]/;
const PLACEHOLDER = /^(?:(\d+)|([A-Za-z_$][\w$]*))((?:\.[\w$]+)*)$/;

/**
 * Compiles `key` for `method` once, at class definition. Throws a `TypeError` naming `where` if a
 * placeholder names no parameter, or if two placeholders are separated by nothing but characters
 * a value may contain (the key would then be ambiguous).
 */
export function compileKeyResolver(
  key: LockedKey,
  method: (...args: never[]) => unknown,
  where: string,
): KeyResolver {
  if (typeof key === 'function') {
    return (args) => {
      const result = (key as (...a: readonly unknown[]) => unknown)(...args);
      if (typeof result !== 'string' && !Array.isArray(result)) {
        throw new TypeError(
          `${where}: the key function returned ${describeValue(result)}, not a string or string[]`,
        );
      }
      return result as LockKeys;
    };
  }
  const templates = typeof key === 'string' ? [key] : key;
  if (
    !Array.isArray(templates) ||
    templates.length === 0 ||
    templates.some((t) => typeof t !== 'string')
  ) {
    throw new TypeError(
      `${where}: the lock key must be a template string, a non-empty array of them, or a function`,
    );
  }
  const params = parseParameterNames(method);
  const compiled = templates.map((template) => compileTemplate(template, params, where));
  if (typeof key === 'string') return (args) => render(compiled[0], args, key, where);
  return (args) => compiled.map((parts, i) => render(parts, args, templates[i], where));
}

function compileTemplate(
  template: string,
  params: { names: (string | undefined)[]; rest: boolean },
  where: string,
): Part[] {
  if (template.length === 0) throw new TypeError(`${where}: the lock key template is empty`);
  const parts: Part[] = [];
  let last = 0;
  for (const match of template.matchAll(/<([^<>]*)>/g)) {
    const at = match.index ?? 0;
    const text = template.slice(last, at);
    if (/[<>]/.test(text))
      throw new TypeError(`${where}: unbalanced "<" or ">" in key template "${template}"`);
    if (parts.length > 0 && typeof parts[parts.length - 1] !== 'string' && !hasDelimiter(text)) {
      throw new TypeError(
        `${where}: placeholders in "${template}" must be separated by a character such as ":" or "/" ` +
          `(letters, digits, "_", ".", "-" may occur in values, so the key would be ambiguous)`,
      );
    }
    if (text) parts.push(text);
    parts.push(compilePlaceholder(match[1], params, template, where));
    last = at + match[0].length;
  }
  const tail = template.slice(last);
  if (/[<>]/.test(tail))
    throw new TypeError(`${where}: unbalanced "<" or ">" in key template "${template}"`);
  if (tail) parts.push(tail);
  return parts;
}

function hasDelimiter(text: string): boolean {
  return [...text].some((c) => c !== '%' && !SAFE.test(c));
}

function compilePlaceholder(
  body: string,
  params: { names: (string | undefined)[]; rest: boolean },
  template: string,
  where: string,
): Placeholder {
  const m = PLACEHOLDER.exec(body);
  if (!m)
    throw new TypeError(`${where}: invalid placeholder <${body}> in key template "${template}"`);
  const path = m[3] ? m[3].slice(1).split('.') : [];
  if (m[1] !== undefined) {
    const index = Number(m[1]);
    if (index >= params.names.length && !params.rest) {
      throw new TypeError(
        `${where}: placeholder <${body}> refers to argument #${index}, but the method declares ${params.names.length}`,
      );
    }
    return { label: body, index, path };
  }
  const index = params.names.indexOf(m[2]);
  if (index < 0) {
    const declared = params.names.map((n, i) => n ?? `#${i}`).join(', ');
    throw new TypeError(
      `${where}: placeholder <${body}> names no parameter of the method (${declared})`,
    );
  }
  return { label: body, index, path };
}

function render(
  parts: readonly Part[],
  args: readonly unknown[],
  template: string,
  where: string,
): string {
  let key = '';
  for (const part of parts) {
    key +=
      typeof part === 'string'
        ? part
        : encodeValue(resolve(part, args, template, where), part, template, where);
  }
  return key;
}

function resolve(
  placeholder: Placeholder,
  args: readonly unknown[],
  template: string,
  where: string,
): unknown {
  let value: unknown = args[placeholder.index];
  let walked =
    placeholder.path.length === 0
      ? `argument <${placeholder.label}>`
      : `argument #${placeholder.index}`;
  for (const segment of placeholder.path) {
    if (
      value === null ||
      value === undefined ||
      (typeof value !== 'object' && typeof value !== 'function')
    ) {
      throw new TypeError(
        `${where}: cannot read "${segment}" of ${walked} (${describeValue(value)}) for key "${template}"`,
      );
    }
    if (!(segment in (value as object))) {
      throw new TypeError(`${where}: ${walked} has no property "${segment}" for key "${template}"`);
    }
    value = (value as Record<string, unknown>)[segment];
    walked += `.${segment}`;
  }
  return value;
}

/**
 * Encodes one argument value into key text. Every character outside [A-Za-z0-9_.-] is %-escaped
 * (UTF-8), so a value can never forge a separator and two different values never give the same
 * key. Numbers and bigints use their decimal form: `42` and `'42'` deliberately name the same
 * key, so a route parameter and a service argument lock the same resource.
 */
function encodeValue(
  value: unknown,
  placeholder: Placeholder,
  template: string,
  where: string,
): string {
  let text: string;
  if (typeof value === 'string') {
    if (value.length === 0) {
      throw new TypeError(
        `${where}: <${placeholder.label}> is an empty string; key "${template}" would be ambiguous`,
      );
    }
    text = value;
  } else if (typeof value === 'number') {
    if (!Number.isFinite(value))
      throw new TypeError(`${where}: <${placeholder.label}> is ${value}, not a usable key`);
    text = String(value);
  } else if (typeof value === 'bigint' || typeof value === 'boolean') {
    text = String(value);
  } else {
    throw new TypeError(
      `${where}: <${placeholder.label}> is ${describeValue(value)}; a key needs a string or number ` +
        `(use a property path such as <${placeholder.label}.id>, or a key function)`,
    );
  }
  let out = '';
  for (const char of text) {
    if (SAFE.test(char)) {
      out += char;
      continue;
    }
    if (char.length === 1 && char.charCodeAt(0) >= 0xd800 && char.charCodeAt(0) <= 0xdfff) {
      throw new TypeError(
        `${where}: <${placeholder.label}> contains a lone surrogate, not well-formed text`,
      );
    }
    for (const byte of Buffer.from(char, 'utf8'))
      out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
