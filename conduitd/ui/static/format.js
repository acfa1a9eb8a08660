// Numbers, sizes, times and lag as the pages show them.
export function num(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return "–";
  return Number(n).toLocaleString("en", { maximumFractionDigits: digits });
}

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${num(value, unit ? 1 : 0)} ${units[unit]}`;
}

export function seconds(s) {
  if (s === null || s === undefined) return "–";
  return s < 1 ? `${num(s * 1000, 1)} ms` : `${num(s, 2)} s`;
}

/** "2026-11-30 11:48:04Z" style, from an ISO string (or the text as it came). */
export function time(iso) {
  if (!iso) return "–";
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? String(iso) : at.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function ago(iso) {
  if (!iso) return "never";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (Number.isNaN(s)) return String(iso);
  if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

/** Lag per partition ({partition: {unit: n}}) summed per unit: {records: 12, bytes: 0}. */
export function lagTotals(lag) {
  const totals = {};
  for (const units of Object.values(lag ?? {})) {
    for (const [unit, n] of Object.entries(units ?? {})) {
      if (typeof n === "number") totals[unit] = (totals[unit] ?? 0) + n;
    }
  }
  return totals;
}

export function lagText(lag) {
  const totals = Object.entries(lagTotals(lag));
  if (!totals.length) return "–";
  return totals.map(([unit, n]) => (unit === "bytes" ? bytes(n) : `${num(n)} ${unit}`)).join(", ");
}

export function json(value) {
  return value === null || value === undefined ? "–" : JSON.stringify(value);
}

/** A datetime-local input's value as an ISO instant in UTC, or null. */
export function instant(localValue) {
  if (!localValue) return null;
  const at = new Date(localValue);
  return Number.isNaN(at.getTime()) ? null : at.toISOString();
}
