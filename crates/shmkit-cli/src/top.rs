//! `shmkit top`: a live view of every shmkit channel, board and broadcast
//! on the machine, from the counters already in their headers (the
//! processes watched pay nothing: nobody joins, nothing is written).
//!
//! `--once` and `--json` print one sample (two readings `--interval`
//! apart, for the rates) for scripts; otherwise a ratatui screen refreshes
//! every interval: arrows or j/k select, `s` changes the sort column,
//! Enter shows the selected object's endpoints, `q` (or Esc) quits.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};
use shmkit::board::{Board, KeyedBoard};
use shmkit::broadcast::Broadcast;
use shmkit::channel::{Channel, Role};
use shmkit::inventory::{self, FileType, ProcessScan, StaleKind, StaleOptions};
use shmkit::layout::Kind;
use shmkit::posix::PosixObject;

use crate::commands::print_json;
use crate::show;

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Print one sample as a table and exit.
    #[arg(long)]
    pub once: bool,
    /// Print one sample as JSON and exit.
    #[arg(long)]
    pub json: bool,
    /// Time between readings (rates are over this interval).
    #[arg(long, default_value = "1s", value_parser = crate::gc::parse_duration)]
    pub interval: Duration,
    /// Only objects whose name (without the slash) matches this glob.
    #[arg(long, value_name = "GLOB")]
    pub name: Option<glob::Pattern>,
}

/// One endpoint of an object: a producer, consumer, writer or subscriber.
#[derive(Debug, Clone)]
struct Endpoint {
    role: &'static str,
    pid: u32,
    alive: bool,
    /// Messages it moved (a subscriber: received).
    messages: u64,
    /// A subscriber's lag, in messages.
    lag: Option<u64>,
}

/// One reading of one object's counters.
#[derive(Debug, Clone)]
struct Reading {
    name: String,
    kind: Kind,
    /// Queued messages (channel); None where it means nothing.
    depth: Option<u64>,
    /// Messages (channel, broadcast) or bytes (board) it holds.
    capacity: u64,
    /// Messages in so far (sent, published) or a board's version.
    total_in: u64,
    /// Messages out so far (received, summed over subscribers).
    total_out: u64,
    endpoints: Vec<Endpoint>,
    stale: bool,
}

/// One row of the view: a reading and its rates since the last one.
#[derive(Debug, Clone)]
struct Row {
    r: Reading,
    in_rate: f64,
    out_rate: f64,
}

fn read_all(filter: Option<&glob::Pattern>) -> Result<Vec<Reading>> {
    let entries = inventory::posix_objects()?;
    let scan = ProcessScan::new();
    let report = inventory::stale_in(&entries, &[], &scan, &StaleOptions::new());
    let stale: HashSet<String> = report
        .objects
        .iter()
        .filter(|o| o.kind == StaleKind::Stale)
        .map(|o| o.target.label())
        .collect();
    let mut out = Vec::new();
    for e in entries {
        if e.file_type != FileType::Regular
            || filter.is_some_and(|p| !p.matches(e.name.file_name()))
        {
            continue;
        }
        let Some(kind) = PosixObject::open_read_only(e.name.as_str())
            .ok()
            .and_then(|o| shmkit::layout::peek_kind_of(&o))
        else {
            continue;
        };
        let name = e.name.as_str().to_string();
        let is_stale = stale.contains(&name);
        // An object we may not open, or one half-made, is skipped: top
        // shows what it can read.
        let reading = match kind {
            Kind::Channel => Channel::open(&name).ok().map(|ch| {
                let s = ch.stats();
                Reading {
                    name: name.clone(),
                    kind,
                    depth: Some(s.depth),
                    capacity: s.capacity,
                    total_in: s.sent,
                    total_out: s.received,
                    endpoints: s
                        .endpoints
                        .iter()
                        .map(|p| Endpoint {
                            role: match p.role {
                                Role::Sender => "producer",
                                Role::Receiver => "consumer",
                            },
                            pid: p.pid,
                            alive: p.alive,
                            messages: p.messages,
                            lag: None,
                        })
                        .collect(),
                    stale: is_stale,
                }
            }),
            Kind::Board => Board::open(&name).ok().map(|b| {
                let s = b.stats();
                Reading {
                    name: name.clone(),
                    kind,
                    depth: None,
                    capacity: s.max_size,
                    total_in: s.version,
                    total_out: 0,
                    endpoints: s
                        .writer
                        .iter()
                        .map(|w| Endpoint {
                            role: "writer",
                            pid: w.pid,
                            alive: w.alive,
                            messages: s.version,
                            lag: None,
                        })
                        .collect(),
                    stale: is_stale,
                }
            }),
            // A keyed board: versions summed over its keys, one writer
            // endpoint per key that has one.
            Kind::KeyedBoard => KeyedBoard::open(&name).ok().map(|b| {
                let keys = b.stats();
                Reading {
                    name: name.clone(),
                    kind,
                    depth: None,
                    capacity: keys.iter().map(|k| k.max_size).sum(),
                    total_in: keys.iter().map(|k| k.version).sum(),
                    total_out: 0,
                    endpoints: keys
                        .iter()
                        .filter_map(|k| {
                            k.writer.as_ref().map(|w| Endpoint {
                                role: "writer",
                                pid: w.pid,
                                alive: w.alive,
                                messages: k.version,
                                lag: None,
                            })
                        })
                        .collect(),
                    stale: is_stale,
                }
            }),
            Kind::Broadcast => Broadcast::open(&name).ok().map(|b| {
                let s = b.stats();
                let mut endpoints: Vec<Endpoint> = s
                    .writer
                    .iter()
                    .map(|w| Endpoint {
                        role: "writer",
                        pid: w.pid,
                        alive: w.alive,
                        messages: s.published,
                        lag: None,
                    })
                    .collect();
                endpoints.extend(s.subscribers.iter().map(|sub| Endpoint {
                    role: "subscriber",
                    pid: sub.pid,
                    alive: sub.alive,
                    messages: sub.received,
                    lag: Some(sub.lag),
                }));
                Reading {
                    name: name.clone(),
                    kind,
                    depth: None,
                    capacity: s.capacity,
                    total_in: s.published,
                    total_out: s.subscribers.iter().map(|x| x.received).sum(),
                    endpoints,
                    stale: is_stale,
                }
            }),
        };
        out.extend(reading);
    }
    Ok(out)
}

/// Rates of `now` against `before` (matched by name), over `dt`.
fn rows(before: &[Reading], now: Vec<Reading>, dt: Duration) -> Vec<Row> {
    let before: HashMap<&str, &Reading> = before.iter().map(|r| (r.name.as_str(), r)).collect();
    let secs = dt.as_secs_f64().max(1e-3);
    now.into_iter()
        .map(|r| {
            let (in_rate, out_rate) = match before.get(r.name.as_str()) {
                Some(b) => (
                    r.total_in.saturating_sub(b.total_in) as f64 / secs,
                    r.total_out.saturating_sub(b.total_out) as f64 / secs,
                ),
                None => (0.0, 0.0),
            };
            Row {
                r,
                in_rate,
                out_rate,
            }
        })
        .collect()
}

/// `2.7M`, `3.4k`, `12`: a rate for a narrow column.
fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn endpoints_cell(r: &Reading) -> String {
    if r.endpoints.is_empty() {
        return "-".into();
    }
    r.endpoints
        .iter()
        .map(|e| {
            let dead = if e.alive { "" } else { "†" };
            let lag = e.lag.map_or(String::new(), |l| format!(" lag {l}"));
            format!("{}:{}{dead}{lag}", &e.role[..1], e.pid)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const HEADER: [&str; 8] = [
    "NAME",
    "OBJECT",
    "DEPTH",
    "CAPACITY",
    "IN/S",
    "OUT/S",
    "STATE",
    "ENDPOINTS",
];

fn row_cells(row: &Row) -> Vec<String> {
    let r = &row.r;
    let state = if r.stale {
        "stale".to_string()
    } else if r.endpoints.iter().any(|e| !e.alive) {
        "dead endpoints".to_string()
    } else {
        "-".to_string()
    };
    let (in_rate, out_rate) = match r.kind {
        // A board's "in" is its version rate; nobody takes anything out.
        Kind::Board | Kind::KeyedBoard => (format!("{} v/s", rate(row.in_rate)), "-".to_string()),
        _ => (rate(row.in_rate), rate(row.out_rate)),
    };
    vec![
        r.name.clone(),
        r.kind.as_str().to_string(),
        r.depth.map_or("-".into(), |d| d.to_string()),
        match r.kind {
            Kind::Board | Kind::KeyedBoard => shmkit::human_bytes(r.capacity),
            _ => r.capacity.to_string(),
        },
        in_rate,
        out_rate,
        state,
        endpoints_cell(r),
    ]
}

fn row_json(row: &Row) -> Value {
    let r = &row.r;
    json!({
        "name": r.name,
        "object": r.kind.as_str(),
        "depth": r.depth,
        "capacity": r.capacity,
        "total_in": r.total_in,
        "total_out": r.total_out,
        "in_per_second": row.in_rate,
        "out_per_second": row.out_rate,
        "stale": r.stale,
        "endpoints": r.endpoints.iter().map(|e| json!({
            "role": e.role,
            "pid": e.pid,
            "alive": e.alive,
            "messages": e.messages,
            "lag": e.lag,
        })).collect::<Vec<_>>(),
    })
}

/// Sort orders `s` cycles through.
const SORTS: [&str; 4] = ["name", "in/s", "depth", "object"];

fn sort_rows(rows: &mut [Row], sort: usize) {
    match SORTS[sort % SORTS.len()] {
        "in/s" => rows.sort_by(|a, b| b.in_rate.total_cmp(&a.in_rate)),
        "depth" => rows.sort_by_key(|r| std::cmp::Reverse(r.r.depth.unwrap_or(0))),
        "object" => rows.sort_by_key(|r| (r.r.kind as u32, r.r.name.clone())),
        _ => rows.sort_by(|a, b| a.r.name.cmp(&b.r.name)),
    }
}

fn sample(args: &TopArgs) -> Result<Vec<Row>> {
    let first = read_all(args.name.as_ref())?;
    let start = Instant::now();
    std::thread::sleep(args.interval);
    let now = read_all(args.name.as_ref())?;
    Ok(rows(&first, now, start.elapsed()))
}

pub fn run(out: &mut dyn Write, args: TopArgs) -> Result<u8> {
    if args.json {
        let rows = sample(&args)?;
        print_json(
            out,
            &json!({
                "interval_seconds": args.interval.as_secs_f64(),
                "objects": rows.iter().map(row_json).collect::<Vec<_>>(),
            }),
        )?;
        return Ok(0);
    }
    if args.once {
        let mut rows = sample(&args)?;
        sort_rows(&mut rows, 0);
        let cells: Vec<Vec<String>> = rows.iter().map(row_cells).collect();
        show::table(out, &HEADER, &cells)?;
        writeln!(
            out,
            "{} objects; rates over {}; † = dead endpoint",
            rows.len(),
            humantime::format_duration(args.interval)
        )?;
        return Ok(0);
    }
    interactive(&args)
}

fn interactive(args: &TopArgs) -> Result<u8> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Color, Modifier, Style};
    use ratatui::widgets::{
        Block, Borders, Cell, Clear, Paragraph, Row as TRow, Table, TableState,
    };

    let mut terminal = ratatui::init();
    let result = (|| -> Result<()> {
        let mut before = read_all(args.name.as_ref())?;
        let mut taken = Instant::now();
        let mut rows_now: Vec<Row> = rows(&before, before.clone(), Duration::from_secs(1));
        let mut state = TableState::default().with_selected(Some(0));
        let mut sort = 0usize;
        let mut detail = false;
        loop {
            sort_rows(&mut rows_now, sort);
            terminal.draw(|f| {
                let [main, foot] =
                    Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(f.area());
                let header = TRow::new(HEADER.iter().map(|h| Cell::from(*h)))
                    .style(Style::default().add_modifier(Modifier::BOLD));
                let body = rows_now.iter().map(|r| {
                    let style = if r.r.stale {
                        Style::default().fg(Color::Red)
                    } else {
                        Style::default()
                    };
                    TRow::new(row_cells(r).into_iter().map(Cell::from)).style(style)
                });
                let widths = [
                    Constraint::Fill(3),
                    Constraint::Length(9),
                    Constraint::Length(6),
                    Constraint::Length(9),
                    Constraint::Length(10),
                    Constraint::Length(7),
                    Constraint::Length(14),
                    Constraint::Fill(3),
                ];
                let table = Table::new(body, widths)
                    .header(header)
                    .block(Block::default().borders(Borders::ALL).title(format!(
                        " shmkit top: {} objects, sorted by {} ",
                        rows_now.len(),
                        SORTS[sort % SORTS.len()]
                    )))
                    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
                f.render_stateful_widget(table, main, &mut state);
                f.render_widget(
                    Paragraph::new("q quit  ↑↓ select  s sort  Enter detail  († dead endpoint)"),
                    foot,
                );
                if detail {
                    if let Some(r) = state.selected().and_then(|i| rows_now.get(i)) {
                        let mut lines = vec![
                            format!("{} ({})", r.r.name, r.r.kind.as_str()),
                            format!(
                                "in {}  out {}  in/s {}  out/s {}",
                                r.r.total_in,
                                r.r.total_out,
                                rate(r.in_rate),
                                rate(r.out_rate)
                            ),
                        ];
                        for e in &r.r.endpoints {
                            lines.push(format!(
                                "{:<10} pid {:<8} {:<5} {} messages{}",
                                e.role,
                                e.pid,
                                if e.alive { "alive" } else { "dead" },
                                e.messages,
                                e.lag.map_or(String::new(), |l| format!(", lag {l}"))
                            ));
                        }
                        let area = main.inner(ratatui::layout::Margin::new(4, 2));
                        f.render_widget(Clear, area);
                        f.render_widget(
                            Paragraph::new(lines.join("\n"))
                                .block(Block::default().borders(Borders::ALL).title(" detail ")),
                            area,
                        );
                    }
                }
            })?;
            let wait = args.interval.saturating_sub(taken.elapsed());
            if event::poll(wait)? {
                if let Event::Key(key) = event::read()? {
                    if key.kind != KeyEventKind::Press {
                        continue;
                    }
                    match key.code {
                        KeyCode::Char('q') | KeyCode::Esc if !detail => return Ok(()),
                        KeyCode::Char('q') | KeyCode::Esc => detail = false,
                        KeyCode::Char('s') => sort += 1,
                        KeyCode::Enter => detail = !detail,
                        KeyCode::Down | KeyCode::Char('j') => state.select_next(),
                        KeyCode::Up | KeyCode::Char('k') => state.select_previous(),
                        _ => {}
                    }
                }
                continue;
            }
            let now = read_all(args.name.as_ref())?;
            rows_now = rows(&before, now.clone(), taken.elapsed());
            before = now;
            taken = Instant::now();
        }
    })();
    ratatui::restore();
    result.map(|()| 0)
}
