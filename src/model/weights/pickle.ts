/**
 * A restricted unpickler: the subset of Python's pickle machine (protocols 2-5) that a PyTorch state dict
 * uses, and nothing that can run code.
 *
 * Python's pickle executes arbitrary callables (GLOBAL + REDUCE is `os.system('...')` in two opcodes).
 * Here every GLOBAL / STACK_GLOBAL is passed to the caller's `resolveGlobal`, which returns a JS stand-in
 * for an allow-listed name or throws; REDUCE only ever calls those stand-ins. Anything outside the opcode
 * subset below is rejected by name. The caller (pytorch.ts) decides what is allowed.
 */
import { CheckpointFormatError } from '../../errors.ts';

/** A Python tuple (kept apart from lists so that the structure of a pickle can be checked). */
export class PyTuple {
  constructor(readonly items: unknown[]) {}
}

/** A Python dict (or OrderedDict); `state` is whatever a BUILD opcode attached (e.g. `_metadata`). */
export class PyDict {
  readonly map = new Map<unknown, unknown>();
  state: unknown = undefined;
}

/** A Python callable, as resolved by `resolveGlobal`: REDUCE calls `call(args)`. */
export class PyCallable {
  constructor(readonly qualifiedName: string, readonly call: (args: unknown[]) => unknown) {}
}

export interface UnpickleHooks {
  /** Resolve `module.name`; must throw for anything not allowed. Returns a PyCallable or an opaque value. */
  resolveGlobal(module: string, name: string): unknown;
  /** Resolve a persistent id (BINPERSID); throw if unsupported. */
  persistentLoad?(pid: unknown): unknown;
  /** Apply BUILD state to an opaque object; without it BUILD is only accepted on dicts. */
  build?(obj: unknown, state: unknown): void;
}

const OPCODE_NAMES: Record<number, string> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT',
  0x4a: 'BININT', 0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID',
  0x51: 'BINPERSID', 0x52: 'REDUCE', 0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND', 0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT',
  0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET', 0x69: 'INST', 0x6a: 'LONG_BINGET',
  0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT',
  0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT',
  0x80: 'PROTO', 0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2',
  0x87: 'TUPLE3', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES', 0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

/** Run the restricted pickle machine over `data` and return the unpickled value. Throws CheckpointFormatError. */
export function restrictedUnpickle(data: Uint8Array, where: string, hooks: UnpickleHooks): unknown {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();
  let opPos = 0;
  let opName = '';

  const fail: (msg: string) => never = (msg) => {
    throw new CheckpointFormatError(`${where}: pickle${opName ? ` ${opName} at byte ${opPos}` : ''}: ${msg}`);
  };
  const need = (n: number): void => { if (pos + n > data.byteLength) fail('pickle data is truncated'); };
  const u8 = (): number => { need(1); return data[pos++]; };
  const u16 = (): number => { need(2); const v = dv.getUint16(pos, true); pos += 2; return v; };
  const u32 = (): number => { need(4); const v = dv.getUint32(pos, true); pos += 4; return v; };
  const u64 = (): number => {
    need(8);
    const v = dv.getUint32(pos, true) + dv.getUint32(pos + 4, true) * 2 ** 32;
    pos += 8;
    if (!Number.isSafeInteger(v)) fail(`length ${v} is too large`);
    return v;
  };
  const take = (n: number): Uint8Array => { need(n); const b = data.subarray(pos, pos + n); pos += n; return b; };
  const text = (n: number): string => {
    try { return utf8.decode(take(n)); } catch (e) { return fail(`invalid UTF-8: ${(e as Error).message}`); }
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated line');
    const s = new TextDecoder().decode(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (): unknown => { if (stack.length === 0) fail('stack underflow'); return stack.pop(); };
  const top = (): unknown => { if (stack.length === 0) fail('stack underflow'); return stack[stack.length - 1]; };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (prev === undefined) fail('no MARK on the stack');
    stack = prev as unknown[];
    return items;
  };
  /** Little-endian two's-complement integer (LONG1/LONG4) as a JS number; must be a safe integer. */
  const long = (b: Uint8Array): number => {
    if (b.byteLength === 0) return 0;
    let v = 0n;
    for (let i = b.byteLength - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.byteLength - 1] & 0x80) v -= 1n << BigInt(8 * b.byteLength);
    const n = Number(v);
    if (!Number.isSafeInteger(n)) fail(`integer ${v} is too large`);
    return n;
  };
  const resolve = (module: string, name: string): unknown => {
    // The hook throws for anything not allow-listed: nothing is ever looked up or called by name.
    return hooks.resolveGlobal(module, name);
  };
  const setItems = (dict: unknown, items: unknown[]): void => {
    if (!(dict instanceof PyDict)) fail('target is not a dict');
    if (items.length % 2 !== 0) fail('odd number of items');
    for (let i = 0; i < items.length; i += 2) (dict as PyDict).map.set(items[i], items[i + 1]);
  };
  const appendItems = (list: unknown, items: unknown[]): void => {
    if (!Array.isArray(list)) fail('target is not a list');
    (list as unknown[]).push(...items);
  };

  for (;;) {
    opPos = pos;
    if (pos >= data.byteLength) { opName = ''; fail('pickle ends without STOP (truncated?)'); }
    const op = data[pos++];
    opName = OPCODE_NAMES[op] ?? `0x${op.toString(16).padStart(2, '0')}`;
    switch (op) {
      case 0x80: { // PROTO
        const v = u8();
        if (v < 2 || v > 5) fail(`protocol ${v} is not supported (2 to 5 are)`);
        break;
      }
      case 0x95: u64(); break; // FRAME: a length hint; the opcodes inside are read as usual
      case 0x2e: { // STOP
        const result = pop();
        if (metastack.length !== 0) fail('unbalanced MARK at STOP');
        return result;
      }
      case 0x28: metastack.push(stack); stack = []; break; // MARK
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4a: { need(4); const v = dv.getInt32(pos, true); pos += 4; stack.push(v); break; } // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: stack.push(long(take(u8()))); break; // LONG1
      case 0x8b: stack.push(long(take(u32()))); break; // LONG4
      case 0x47: { need(8); const v = dv.getFloat64(pos, false); pos += 8; stack.push(v); break; } // BINFLOAT (big-endian)
      case 0x58: stack.push(text(u32())); break; // BINUNICODE
      case 0x8c: stack.push(text(u8())); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(text(u64())); break; // BINUNICODE8
      case 0x43: stack.push(take(u8())); break; // SHORT_BINBYTES
      case 0x42: stack.push(take(u32())); break; // BINBYTES
      case 0x8e: stack.push(take(u64())); break; // BINBYTES8
      case 0x7d: stack.push(new PyDict()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push(new PyTuple([])); break; // EMPTY_TUPLE
      case 0x74: { const items = popMark(); stack.push(new PyTuple(items)); break; } // TUPLE (pop first: popMark swaps `stack`)
      case 0x85: { const a = pop(); stack.push(new PyTuple([a])); break; } // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push(new PyTuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push(new PyTuple([a, b, c])); break; } // TUPLE3
      case 0x6c: { const items = popMark(); stack.push(items); break; } // LIST
      case 0x64: { const d = new PyDict(); setItems(d, popMark()); stack.push(d); break; } // DICT
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x61: { const v = pop(); appendItems(top(), [v]); break; } // APPEND
      case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const i = op === 0x68 ? u8() : u32();
        if (!memo.has(i)) fail(`memo slot ${i} is empty`);
        stack.push(memo.get(i));
        break;
      }
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line();
        const name = line();
        stack.push(resolve(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('module and name must be strings');
        stack.push(resolve(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PyCallable)) fail('callable is not an allowed function');
        if (!(args instanceof PyTuple)) fail('arguments are not a tuple');
        stack.push((fn as PyCallable).call((args as PyTuple).items));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof PyDict) obj.state = state;
        else if (hooks.build) hooks.build(obj, state);
        else fail('BUILD is only supported on dicts');
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        if (!hooks.persistentLoad) fail('persistent ids are not supported here');
        stack.push(hooks.persistentLoad!(pid));
        break;
      }
      default:
        fail(`opcode ${opName} (0x${op.toString(16).padStart(2, '0')}) is not supported by the restricted unpickler`);
    }
  }
}
