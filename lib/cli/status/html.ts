/**
 * `twill status --html FILE`: one self-contained page (inline CSS and SVG,
 * no script, nothing fetched) that draws the cluster: a box per lease on a
 * ring, an edge between every two valid leases labelled with the backend
 * between them as the agents choose it (`topology.ts`), reservations
 * dashed, health as a coloured dot when probed, and invalid entries in a row
 * of their own below (no node talks to them, so they have no edges). Under
 * the drawing, the config and the same table as the terminal shows (VIA
 * included; each node's tooltip says it too).
 *
 * For tests and tools the SVG carries `data-node="<subnet>"` on each box and
 * `data-edge="<subnet a>|<subnet b>"` (subnet order) on each edge, with the
 * texts as visible `<text>` elements. Everything from etcd is escaped.
 * In Kubernetes mode each box and table row names its Node where an etcd
 * lease says when it expires.
 */
import { backendsText, configLines, expiryText, healthText, leaseCells, leaseSummary, printable, viaText, NONE } from './cells';
import { rowName, type ClusterStatus, type LeaseRow } from './model';
import { edgesOf, encrypts, peersOf, NO_COMMON_BACKEND, type TopologyEdge } from './topology';

const NODE_W = 250;
const LINE_H = 16;
const MARGIN = 40;
const CHAR_W = 7.3; // 12px monospace
/** Above this many nodes edge labels go into tooltips only: the ring has no room for them. */
const MAX_LABELLED_NODES = 10;

const BACKEND_COLOURS: Readonly<Record<string, string>> = {
  vxlan: '#2563eb', 'host-gw': '#15803d', ipip: '#9333ea', udp: '#c2410c', alloc: '#64748b', wireguard: '#0f766e', [NO_COMMON_BACKEND]: '#dc2626',
};
const OTHER_COLOUR = '#475569';

interface Box {
  readonly row: LeaseRow;
  readonly x: number; // centre
  readonly y: number;
  readonly w: number;
  readonly h: number;
}

interface Rect { x: number; y: number; w: number; h: number }

export function renderHtml(status: ClusterStatus): string {
  const probed = status.rows.some((r) => r.health);
  const valid = status.rows.filter((r) => r.lease);
  const invalid = status.rows.filter((r) => !r.lease);
  const nodeH = LINE_H * (probed ? 5 : 4) + 14;

  // Valid leases on an ellipse, starting top-left so that four make a square,
  // then moved so that the ring's boxes start at the top-left margin.
  const n = valid.length;
  const rx = n <= 1 ? 0 : Math.max(300, (n * (NODE_W + 60)) / (2 * Math.PI));
  const ry = n <= 1 ? 0 : Math.max(190, rx * 0.6);
  const ring = valid.map((row, i) => {
    const angle = -Math.PI / 2 - Math.PI / Math.max(n, 1) + (2 * Math.PI * i) / Math.max(n, 1);
    return { row, x: rx * Math.cos(angle), y: ry * Math.sin(angle) };
  });
  const minX = Math.min(0, ...ring.map((p) => p.x));
  const maxX = Math.max(0, ...ring.map((p) => p.x));
  const minY = Math.min(0, ...ring.map((p) => p.y));
  const maxY = Math.max(0, ...ring.map((p) => p.y));
  const invalidPerRow = 4;
  const width = Math.max(maxX - minX + NODE_W + 2 * MARGIN, Math.min(invalid.length, invalidPerRow) * (NODE_W + 20) + 2 * MARGIN, 640);
  const dx = (width - (maxX - minX)) / 2 - minX;
  const dy = MARGIN + 24 + nodeH / 2 - minY;
  const boxes: Box[] = ring.map((p) => ({ row: p.row, x: p.x + dx, y: p.y + dy, w: NODE_W, h: nodeH }));
  const cx = width / 2;
  const ringBottom = n ? maxY + dy + nodeH / 2 : MARGIN + 60;

  // Invalid entries: rows of boxes (at least four a row) under the ring.
  const invalidTop = ringBottom + 60;
  const invalidH = LINE_H * 5 + 14;
  const perRow = Math.max(invalidPerRow, Math.floor((width - 2 * MARGIN) / (NODE_W + 20)));
  const invalidBoxes: Box[] = invalid.map((row, i) => ({
    row,
    x: MARGIN + NODE_W / 2 + (i % perRow) * (NODE_W + 20),
    y: invalidTop + 24 + invalidH / 2 + Math.floor(i / perRow) * (invalidH + 20),
    w: NODE_W,
    h: invalidH,
  }));
  const height = (invalid.length ? invalidBoxes[invalidBoxes.length - 1].y + invalidH / 2 : ringBottom) + 24 + 60;

  const byName = new Map(boxes.map((b) => [b.row.key, b]));
  const edges = edgesOf(status.rows, status.config);
  const labelled = n <= MAX_LABELLED_NODES;
  const taken: Rect[] = boxes.map((b) => ({ x: b.x - b.w / 2 - 4, y: b.y - b.h / 2 - 4, w: b.w + 8, h: b.h + 8 }));

  const svg: string[] = [];
  svg.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${fmt(width)} ${fmt(height)}" width="${fmt(width)}" height="${fmt(height)}" role="img" aria-label="cluster topology">`);
  const caption = `${valid.length} node${valid.length === 1 ? '' : 's'}, ${edges.length} edge${edges.length === 1 ? '' : 's'}`
    + (labelled ? '' : ` (more than ${MAX_LABELLED_NODES} nodes: edges are coloured by backend as in the legend; hover one for its label)`);
  svg.push(`<text class="caption" x="${MARGIN}" y="${MARGIN}">${esc(caption)}</text>`);
  if (n === 0) svg.push(`<text class="empty" x="${fmt(cx)}" y="${fmt(MARGIN + 40)}" text-anchor="middle">no valid lease</text>`);
  for (const e of edges) svg.push(edgeSvg(e, byName, taken, labelled));
  for (const b of boxes) svg.push(nodeSvg(b, probed, viaText(peersOf(b.row, status.rows, status.config))));
  if (invalid.length) {
    svg.push(`<text class="caption invalid-caption" x="${MARGIN}" y="${fmt(invalidTop)}">Ignored by every node (invalid):</text>`);
    for (const b of invalidBoxes) svg.push(nodeSvg(b, false, NONE));
  }
  svg.push(legendSvg(MARGIN, height - 30, edges));
  svg.push('</svg>');

  return page(status, svg.join('\n'));
}

function edgeSvg(e: TopologyEdge, boxes: ReadonlyMap<string, Box>, taken: Rect[], labelled: boolean): string {
  const a = boxes.get(e.a.key);
  const b = boxes.get(e.b.key);
  if (!a || !b) return '';
  const colour = BACKEND_COLOURS[e.backend] ?? OTHER_COLOUR;
  const dash = e.backend === NO_COMMON_BACKEND ? ' stroke-dasharray="6 5"' : '';
  const title = `${rowName(e.a)} ↔ ${rowName(e.b)}: ${e.backend === NO_COMMON_BACKEND ? 'no backend in common' : e.backend}${encrypts(e.backend) ? ' (encrypted)' : ''}`;
  const parts = [
    `<g class="edge" data-edge="${esc(e.id)}" data-backend="${esc(e.backend)}" data-encrypted="${encrypts(e.backend)}">`,
    `<title>${esc(title)}</title>`,
    `<line x1="${fmt(a.x)}" y1="${fmt(a.y)}" x2="${fmt(b.x)}" y2="${fmt(b.y)}" stroke="${colour}" stroke-width="2"${dash}/>`,
  ];
  if (labelled) {
    const at = placeLabel(a, b, e.backend, taken);
    parts.push(`<text class="edge-label" x="${fmt(at.x)}" y="${fmt(at.y + 4)}" text-anchor="middle" fill="${colour}">${esc(e.backend)}</text>`);
  }
  parts.push('</g>');
  return parts.join('');
}

/** The first point along the edge, from its middle outwards, where the label overlaps nothing drawn yet. */
function placeLabel(a: Box, b: Box, text: string, taken: Rect[]): { x: number; y: number } {
  const w = text.length * CHAR_W + 10;
  const h = 18;
  for (const t of [0.5, 0.4, 0.6, 0.32, 0.68, 0.25, 0.75, 0.45, 0.55, 0.36, 0.64]) {
    const x = a.x + (b.x - a.x) * t;
    const y = a.y + (b.y - a.y) * t;
    const r = { x: x - w / 2, y: y - h / 2, w, h };
    if (!taken.some((o) => overlaps(o, r))) {
      taken.push(r);
      return { x, y };
    }
  }
  return { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
}

function overlaps(p: Rect, q: Rect): boolean {
  return p.x < q.x + q.w && q.x < p.x + p.w && p.y < q.y + q.h && q.y < p.y + p.h;
}

/** `via`: the backends it uses to its peers (`viaText`), for the tooltip. */
function nodeSvg(b: Box, probed: boolean, via: string): string {
  const row = b.row;
  const state = row.invalid !== undefined ? 'invalid' : row.expiry.kind === 'reservation' ? 'reservation' : 'lease';
  const left = b.x - b.w / 2;
  const top = b.y - b.h / 2;
  const maxChars = Math.floor((b.w - 20) / CHAR_W);
  const lines: { text: string; cls: string }[] = [{ text: rowName(row), cls: 'subnet' }];
  if (state === 'invalid') {
    lines.push({ text: 'INVALID', cls: 'invalid-tag' });
    if (row.node !== undefined) lines.push({ text: `Node ${row.node}`, cls: 'detail' });
    for (const l of wrap(printable(row.invalid ?? '', 400), maxChars, 3)) lines.push({ text: l, cls: 'detail' });
  } else {
    lines.push({ text: `public IP ${row.attrs?.publicIP ?? '-'}`, cls: 'detail' });
    lines.push({ text: backendsText(row), cls: 'detail' });
    if (row.node !== undefined) lines.push({ text: `Node ${row.node}`, cls: 'detail' });
    else lines.push({ text: state === 'reservation' ? 'reservation (no expiry)' : `expires in ${expiryText(row.expiry)}`, cls: state === 'reservation' ? 'reservation-tag' : 'detail' });
    // The detail (why not ready) is in the tooltip and the table below.
    if (probed) lines.push({ text: `health: ${row.health?.state ?? 'not asked'}`, cls: `health health-${(row.health?.state ?? 'unknown').replace(' ', '-')}` });
  }
  const title = [rowName(row), `key ${printable(row.key)}`, ...(via !== NONE ? [`via ${via}`] : []), ...(row.invalid !== undefined ? [`INVALID: ${printable(row.invalid, 400)}`] : []), ...(row.health ? [`health: ${healthText(row.health)}`] : [])].join('\n');
  const health = row.health ? ` data-health="${esc(row.health.state)}"` : '';
  const out = [
    `<g class="node node-${state}" data-node="${esc(rowName(row))}" data-key="${esc(printable(row.key, 200))}" data-state="${state}"${health}>`,
    `<title>${esc(title)}</title>`,
    `<rect x="${fmt(left)}" y="${fmt(top)}" width="${fmt(b.w)}" height="${fmt(b.h)}" rx="8"/>`,
  ];
  lines.forEach((l, i) => {
    const text = printable(l.text, maxChars);
    const dot = l.cls.startsWith('health ') ? `<tspan class="dot">● </tspan>` : '';
    out.push(`<text class="${l.cls}" x="${fmt(left + 10)}" y="${fmt(top + 20 + i * LINE_H)}">${dot}${esc(text)}</text>`);
  });
  out.push('</g>');
  return out.join('');
}

/** Up to `lines` lines of at most `width` characters, broken at spaces where possible; `…` when cut. */
function wrap(text: string, width: number, lines: number): string[] {
  const out: string[] = [];
  let rest = text;
  while (rest && out.length < lines) {
    if (rest.length <= width) {
      out.push(rest);
      rest = '';
      break;
    }
    const space = rest.lastIndexOf(' ', width);
    const cut = space > width / 2 ? space : width;
    out.push(rest.slice(0, cut));
    rest = rest.slice(cut).trimStart();
  }
  if (rest) out[out.length - 1] = `${out[out.length - 1].slice(0, width - 1)}…`;
  return out;
}

function legendSvg(x: number, y: number, edges: readonly TopologyEdge[]): string {
  const used = [...new Set(edges.map((e) => e.backend))].sort();
  const items: string[] = [];
  let at = x;
  const item = (svg: string, label: string) => {
    items.push(`<g transform="translate(${fmt(at)},${fmt(y)})">${svg}<text class="legend" x="34" y="4">${esc(label)}</text></g>`);
    at += 44 + label.length * CHAR_W + 20;
  };
  for (const b of used) {
    const colour = BACKEND_COLOURS[b] ?? OTHER_COLOUR;
    const dash = b === NO_COMMON_BACKEND ? ' stroke-dasharray="6 5"' : '';
    item(`<line x1="0" y1="0" x2="28" y2="0" stroke="${colour}" stroke-width="2"${dash}/>`, b === NO_COMMON_BACKEND ? 'none: no backend in common' : b);
  }
  item('<rect class="legend-reservation" x="0" y="-8" width="28" height="16" rx="3"/>', 'reservation');
  item('<rect class="legend-invalid" x="0" y="-8" width="28" height="16" rx="3"/>', 'invalid');
  return `<g class="legend-box">${items.join('')}</g>`;
}

function page(status: ClusterStatus, svg: string): string {
  const config = configLines(status.config, status.store.kind)
    .map((l) => `<tr${l.problem ? ' class="problem"' : ''}><th>${esc(l.label)}</th><td>${esc(l.value)}</td></tr>`)
    .join('\n');
  const probed = status.rows.some((r) => r.health);
  const kube = status.store.kind === 'kube';
  const heads = ['Subnet', 'Public IP', 'Backends', 'Via', 'VTEP MAC', kube ? 'Node' : 'Expires', ...(probed ? ['Health'] : []), 'Problem'];
  const rows = status.rows.map((r) => {
    const c = leaseCells(r, status);
    const cells = [c.subnet, c.publicIP, c.backends, c.via, c.vtepMAC, kube ? c.node : c.expires, ...(probed ? [c.health] : []), c.problem];
    const cls = r.invalid !== undefined ? ' class="invalid"' : r.expiry.kind === 'reservation' ? ' class="reservation"' : '';
    return `<tr${cls}>${cells.map((t) => `<td>${esc(t)}</td>`).join('')}</tr>`;
  }).join('\n');
  const store = status.store;
  const title = `twill status — ${printable(store.kind === 'etcd' ? store.prefix : store.server)}`;
  const source = store.kind === 'etcd'
    ? `${store.endpoints.join(', ')} at revision ${store.revision}`
    // The server is named by the summary that follows.
    : `the Kubernetes API (Nodes at resourceVersion ${store.resourceVersion}, network config from the ${store.netConf})`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
${CSS}
</style>
</head>
<body>
<header>
<h1>${esc(title)}</h1>
<p class="meta">${esc(`read ${status.readAt.toISOString()} from ${source}; ${leaseSummary(status)}`)}</p>
</header>
<figure>
${svg}
</figure>
<section>
<h2>Network config</h2>
<table class="config">
${config}
</table>
</section>
<section>
<h2>Leases</h2>
<table class="leases">
<thead><tr>${heads.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead>
<tbody>
${rows}
</tbody>
</table>
</section>
</body>
</html>
`;
}

const CSS = `
body { font-family: system-ui, sans-serif; margin: 16px 24px; color: #0f172a; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 20px 0 6px; }
.meta { color: #475569; font-size: 13px; margin: 0; }
figure { margin: 8px 0; }
svg { max-width: 100%; height: auto; font-family: 'DejaVu Sans Mono', 'Liberation Mono', ui-monospace, monospace; font-size: 12px; }
.caption { fill: #475569; font-size: 13px; }
.invalid-caption { fill: #b91c1c; }
.empty { fill: #64748b; font-size: 14px; }
.node rect { fill: #f8fafc; stroke: #334155; stroke-width: 1.5; }
.node-reservation rect { fill: #ecfeff; stroke: #0e7490; stroke-dasharray: 6 4; }
.node-invalid rect { fill: #fef2f2; stroke: #dc2626; }
.node .subnet { font-weight: bold; font-size: 14px; fill: #0f172a; }
.node .detail { fill: #334155; }
.reservation-tag { fill: #0e7490; font-weight: bold; }
.invalid-tag { fill: #b91c1c; font-weight: bold; }
.health-ready { fill: #15803d; }
.health-not-ready { fill: #b91c1c; }
.health-unknown { fill: #b45309; }
.edge-label { font-size: 12px; font-weight: bold; paint-order: stroke; stroke: #fff; stroke-width: 4px; stroke-linejoin: round; }
.legend { fill: #334155; font-size: 12px; }
.legend-reservation { fill: #ecfeff; stroke: #0e7490; stroke-dasharray: 4 3; }
.legend-invalid { fill: #fef2f2; stroke: #dc2626; }
table { border-collapse: collapse; font-size: 13px; }
th, td { text-align: left; padding: 3px 10px 3px 0; vertical-align: top; }
.config th { color: #475569; font-weight: normal; }
.leases thead th { border-bottom: 1px solid #cbd5e1; }
.leases td { font-family: 'DejaVu Sans Mono', 'Liberation Mono', ui-monospace, monospace; font-size: 12px; }
tr.invalid td { color: #b91c1c; }
tr.reservation td { color: #0e7490; }
tr.problem td { color: #b45309; }
`.trim();

/** SVG coordinates with one decimal. */
function fmt(v: number): string {
  return String(Math.round(v * 10) / 10);
}

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
