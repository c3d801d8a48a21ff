// The supervisor's charts, drawn as inline SVG by hand (no chart library: a few hundred bytes).
// Each is a <figure> whose SVG has role="img", a <title> and a <desc> that says in words what
// the picture shows, so a screen reader gets the numbers too.

export interface Series {
  name: string;
  points: { at: number; value: number }[];
}

export interface Bar {
  label: string;
  value: number;
  color?: string;
}

// Distinguishable on white and for the common colour-vision deficiencies (Okabe–Ito, darkened
// where needed for 3:1 against the background).
export const PALETTE = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#7a6a00', '#56b4e9', '#000000', '#e69f00'];

const W = 560;
const H = 220;
const PAD = { left: 40, right: 12, top: 12, bottom: 28 };

/** A value axis for counts: a round step (1, 2, 2.5, 5 × 10ⁿ; whole numbers) and the top. */
function axis(v: number): { max: number; step: number } {
  if (v <= 5) return { max: Math.max(1, Math.ceil(v)), step: 1 };
  const raw = v / 5;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((x) => x >= raw && Number.isInteger(x)) ?? 10 * p;
  return { max: step * Math.ceil(v / step), step };
}

function YAxis({ max, step, y }: { max: number; step: number; y: (v: number) => number }) {
  const ticks: number[] = [];
  for (let v = 0; v <= max; v += step) ticks.push(v);
  return (
    <g class="axis" aria-hidden="true">
      {ticks.map((v) => (
        <g key={v}>
          <line x1={PAD.left} x2={W - PAD.right} y1={y(v)} y2={y(v)} class="grid" />
          <text x={PAD.left - 6} y={y(v)} dy="0.32em" text-anchor="end">
            {v}
          </text>
        </g>
      ))}
    </g>
  );
}

export function LineChart({
  id,
  title,
  desc,
  series,
  from,
  to,
  timeLabel,
  empty,
}: {
  id: string;
  title: string;
  desc: string;
  series: Series[];
  from: number;
  to: number;
  timeLabel: (at: number) => string;
  empty: string;
}) {
  const all = series.flatMap((s) => s.points);
  const { max, step } = axis(Math.max(0, ...all.map((p) => p.value)));
  const span = Math.max(1, to - from);
  const x = (at: number) => PAD.left + ((at - from) / span) * (W - PAD.left - PAD.right);
  const y = (v: number) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const ticks = Array.from({ length: 5 }, (_, i) => from + (span * i) / 4);
  return (
    <figure class="chart" data-chart={id}>
      <figcaption id={`${id}-title`}>{title}</figcaption>
      {all.length === 0 ? (
        <p class="empty">{empty}</p>
      ) : (
        <>
          <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-labelledby={`${id}-svg-title ${id}-desc`}>
            <title id={`${id}-svg-title`}>{title}</title>
            <desc id={`${id}-desc`}>{desc}</desc>
            <YAxis max={max} step={step} y={y} />
            <g class="axis" aria-hidden="true">
              <line x1={PAD.left} x2={W - PAD.right} y1={H - PAD.bottom} y2={H - PAD.bottom} class="baseline" />
              {ticks.map((at, i) => (
                <text key={i} x={x(at)} y={H - PAD.bottom + 16} text-anchor={i === 0 ? 'start' : i === 4 ? 'end' : 'middle'}>
                  {timeLabel(at)}
                </text>
              ))}
            </g>
            {series.map((s, i) => (
              <polyline
                key={s.name}
                data-series={s.name}
                fill="none"
                stroke={PALETTE[i % PALETTE.length]}
                stroke-width="2.5"
                stroke-linejoin="round"
                points={s.points.map((p) => `${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ')}
              />
            ))}
          </svg>
          <ul class="legend">
            {series.map((s, i) => (
              <li key={s.name}>
                <span class="swatch" style={{ background: PALETTE[i % PALETTE.length] }} aria-hidden="true" />
                {s.name}
              </li>
            ))}
          </ul>
        </>
      )}
    </figure>
  );
}

export function BarChart({
  id,
  title,
  desc,
  bars,
  summary,
  empty,
}: {
  id: string;
  title: string;
  desc: string;
  bars: Bar[];
  summary?: string;
  empty?: string;
}) {
  const { max, step } = axis(Math.max(0, ...bars.map((b) => b.value)));
  const y = (v: number) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const slot = (W - PAD.left - PAD.right) / Math.max(1, bars.length);
  const bw = Math.min(56, slot * 0.7);
  const total = bars.reduce((n, b) => n + b.value, 0);
  return (
    <figure class="chart" data-chart={id} data-total={total}>
      <figcaption id={`${id}-title`}>{title}</figcaption>
      {total === 0 && empty ? (
        <p class="empty">{empty}</p>
      ) : (
        <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-labelledby={`${id}-svg-title ${id}-desc`}>
          <title id={`${id}-svg-title`}>{title}</title>
          <desc id={`${id}-desc`}>{desc}</desc>
          <YAxis max={max} step={step} y={y} />
          <line x1={PAD.left} x2={W - PAD.right} y1={H - PAD.bottom} y2={H - PAD.bottom} class="baseline" aria-hidden="true" />
          {bars.map((b, i) => {
            const cx = PAD.left + slot * i + slot / 2;
            return (
              <g key={b.label} class="bar" data-label={b.label} data-count={b.value} aria-hidden="true">
                <rect x={cx - bw / 2} y={y(b.value)} width={bw} height={Math.max(0, H - PAD.bottom - y(b.value))} fill={b.color || PALETTE[0]} rx="2" />
                {b.value > 0 && (
                  <text x={cx} y={y(b.value) - 4} text-anchor="middle" class="value">
                    {b.value}
                  </text>
                )}
                <text x={cx} y={H - PAD.bottom + 16} text-anchor="middle">
                  {b.label}
                </text>
              </g>
            );
          })}
        </svg>
      )}
      {summary && <p class="chart-summary">{summary}</p>}
    </figure>
  );
}
