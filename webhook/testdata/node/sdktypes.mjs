// Checks JSON values against the TypeScript types that Polar's SDK
// declares, so a test can say "no field is missing from any typed
// response" with the SDK's own declarations as the reference rather than
// a list written by hand. The SDK does not validate responses at run
// time: a missing property would only show up as undefined in a client.
//
// typeChecker(exprs) compiles one virtual module that names each type
// expression (e.g. `models.CustomerSeat`, or
// `Awaited<ReturnType<Polar["customerSeats"]["assignSeat"]>>`) against
// the installed @polar-sh/sdk, and returns check(value, expr), which lists
// every problem: a required property missing, a value of the wrong type,
// a string outside an enum. Properties seatd sends beyond the type are
// reported apart, as extras, since clients ignore them.
import ts from "typescript";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

export function typeChecker(exprs) {
  const file = join(here, "__sdk_types__.ts");
  const source = [
    `import type { models, Polar } from "@polar-sh/sdk/2026-10";`,
    ...exprs.map((e, i) => `export type T${i} = ${e};`),
  ].join("\n");
  const options = {
    strict: true,
    noEmit: true,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    target: ts.ScriptTarget.ES2022,
    skipLibCheck: true,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, source, lang, true) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  const diags = ts.getPreEmitDiagnostics(program).filter((d) => d.file?.fileName === file);
  if (diags.length > 0) {
    throw new Error("SDK type expressions do not compile: " +
      diags.map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n")).join("; "));
  }
  const checker = program.getTypeChecker();
  const types = new Map();
  let i = 0;
  ts.forEachChild(program.getSourceFile(file), (node) => {
    if (ts.isTypeAliasDeclaration(node)) {
      types.set(exprs[i++], checker.getTypeAtLocation(node.name));
    }
  });

  // problems(value, type, path) returns [] when value is of type.
  function problems(value, type, path) {
    const f = type.flags;
    if (f & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return [];
    if (type.isUnion()) {
      let best = null;
      for (const member of type.types) {
        const p = problems(value, member, path);
        if (p.length === 0) return [];
        if (best === null || p.length < best.length) best = p;
      }
      // When no member fits, say what was expected, not just the nearest miss.
      if (value === undefined) return [`${path}: missing (${checker.typeToString(type)})`];
      if (value === null || typeof value !== "object") {
        return [`${path}: ${JSON.stringify(value)} is not ${checker.typeToString(type)}`];
      }
      return best;
    }
    if (f & ts.TypeFlags.Null) return value === null ? [] : [`${path}: expected null, got ${JSON.stringify(value)}`];
    if (f & ts.TypeFlags.Undefined) return value === undefined ? [] : [`${path}: expected undefined`];
    if (value === undefined) return [`${path}: missing (${checker.typeToString(type)})`];
    if (f & ts.TypeFlags.StringLiteral) return value === type.value ? [] : [`${path}: ${JSON.stringify(value)} is not "${type.value}"`];
    if (f & ts.TypeFlags.NumberLiteral) return value === type.value ? [] : [`${path}: ${JSON.stringify(value)} is not ${type.value}`];
    if (f & ts.TypeFlags.BooleanLiteral) {
      const want = checker.typeToString(type) === "true";
      return value === want ? [] : [`${path}: ${JSON.stringify(value)} is not ${want}`];
    }
    if (f & ts.TypeFlags.StringLike) return typeof value === "string" ? [] : [`${path}: ${JSON.stringify(value)} is not a string`];
    if (f & ts.TypeFlags.NumberLike) return typeof value === "number" ? [] : [`${path}: ${JSON.stringify(value)} is not a number`];
    if (f & ts.TypeFlags.BooleanLike) return typeof value === "boolean" ? [] : [`${path}: ${JSON.stringify(value)} is not a boolean`];
    if (!(f & ts.TypeFlags.Object) && !type.isIntersection()) {
      return [`${path}: cannot check type ${checker.typeToString(type)}`];
    }
    if (checker.isArrayType(type) || checker.isTupleType(type)) {
      if (!Array.isArray(value)) return [`${path}: ${JSON.stringify(value)} is not an array`];
      const args = checker.getTypeArguments(type);
      return value.flatMap((v, k) => problems(v, checker.isTupleType(type) ? args[k] : args[0], `${path}[${k}]`));
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      return [`${path}: ${JSON.stringify(value)} is not an object (${checker.typeToString(type)})`];
    }
    const out = [];
    const props = checker.getPropertiesOfType(type);
    for (const prop of props) {
      const name = prop.getName();
      const optional = (prop.flags & ts.SymbolFlags.Optional) !== 0;
      if (optional && !(name in value)) continue;
      out.push(...problems(value[name], checker.getTypeOfSymbol(prop), `${path}.${name}`));
    }
    const index = checker.getIndexInfosOfType(type);
    if (index.length > 0) {
      const known = new Set(props.map((p) => p.getName()));
      for (const [k, v] of Object.entries(value)) {
        if (!known.has(k)) out.push(...problems(v, index[0].type, `${path}.${k}`));
      }
    }
    return out;
  }

  function extras(value, type, path, out) {
    if (value === null || typeof value !== "object") return;
    if (type.isUnion()) {
      const fit = type.types.find((m) => problems(value, m, path).length === 0);
      if (fit) extras(value, fit, path, out);
      return;
    }
    if (checker.isArrayType(type)) {
      const [el] = checker.getTypeArguments(type);
      value.forEach((v, k) => extras(v, el, `${path}[${k}]`, out));
      return;
    }
    if (checker.getIndexInfosOfType(type).length > 0) return;
    for (const [k, v] of Object.entries(value)) {
      const prop = checker.getPropertyOfType(type, k);
      if (!prop) out.push(`${path}.${k}`);
      else extras(v, checker.getNonNullableType(checker.getTypeOfSymbol(prop)), `${path}.${k}`, out);
    }
  }

  return {
    // check returns {problems, extras} of value against expr.
    check(value, expr) {
      const type = types.get(expr);
      if (!type) throw new Error(`type ${expr} was not declared to typeChecker`);
      const ex = [];
      extras(value, type, "$", ex);
      return { problems: problems(value, type, "$"), extras: ex };
    },
    name(expr) {
      return checker.typeToString(types.get(expr));
    },
  };
}
