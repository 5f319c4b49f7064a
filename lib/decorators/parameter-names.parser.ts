/**
 * Reads the parameter names of a function from its source, once, at decoration time. Returns one
 * entry per declared parameter: its name, or `undefined` for a destructured one (reachable by
 * index only). A rest parameter is reported with its name and flagged.
 */
export function parseParameterNames(fn: (...args: never[]) => unknown): {
  names: (string | undefined)[];
  rest: boolean;
} {
  const source = stripComments(Function.prototype.toString.call(fn));
  let start = 0;
  if (source.startsWith('[')) start = matchingClose(source, 0) + 1; // computed method name
  const open = source.indexOf('(', start);
  if (open < 0) {
    // `x => ...`: a single bare parameter.
    const bare = /^\s*(?:async\s+)?([A-Za-z_$][\w$]*)\s*=>/.exec(source);
    return { names: bare ? [bare[1]] : [], rest: false };
  }
  const close = matchingClose(source, open);
  const list = splitTopLevel(source.slice(open + 1, close));
  let rest = false;
  const names = list
    .map((param) => param.trim())
    .filter((param) => param.length > 0)
    .map((param) => {
      if (param.startsWith('...')) {
        rest = true;
        param = param.slice(3).trim();
      }
      if (param.startsWith('{') || param.startsWith('[')) return undefined;
      return /^[A-Za-z_$][\w$]*/.exec(param)?.[0];
    });
  return { names, rest };
}

const PAIRS: Record<string, string> = { '(': ')', '[': ']', '{': '}' };

/** Index of the bracket closing the one at `open`, skipping strings and nested brackets. */
function matchingClose(source: string, open: number): number {
  const stack: string[] = [];
  for (let i = open; i < source.length; i++) {
    const c = source[i];
    if (c === '"' || c === "'" || c === '`') {
      i = skipString(source, i);
    } else if (PAIRS[c]) {
      stack.push(PAIRS[c]);
    } else if (c === stack[stack.length - 1]) {
      stack.pop();
      if (stack.length === 0) return i;
    }
  }
  return source.length;
}

function skipString(source: string, start: number): number {
  const quote = source[start];
  for (let i = start + 1; i < source.length; i++) {
    if (source[i] === '\\') i++;
    else if (source[i] === quote) return i;
  }
  return source.length;
}

function splitTopLevel(list: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (let i = 0; i < list.length; i++) {
    const c = list[i];
    if (c === '"' || c === "'" || c === '`') {
      const end = skipString(list, i);
      current += list.slice(i, end + 1);
      i = end;
      continue;
    }
    if (PAIRS[c]) depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    if (c === ',' && depth === 0) {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts;
}

function stripComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '');
}
