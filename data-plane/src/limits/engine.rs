//! The engine: limits compiled from a snapshot into chains of levels per virtual key, admission
//! (all levels or none) and settlement.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tollgate_proto::config::v1 as pb;
use tollgate_proto::pricing::Cost;

use super::cell::{Ask, Charge, ConcurrencyCell, WindowCell};
use super::{
    CellKey, CellUsage, CounterHolding, CounterId, Exhausted, LevelId, LimitsError, Refusal,
    UseReport,
};
use tollgate_proto::window::{Period, Window, WindowSpec};

/// What a window counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Requests,
    Tokens,
    Cost,
}

#[derive(Debug)]
struct Counter {
    unit: Unit,
    limit: u64,
    /// Admin reset instant (budgets; 0: none).
    reset_at: i64,
    cell: Arc<WindowCell>,
}

/// Requests in flight at a level: counted at every virtual key, team and customer (for the
/// usage endpoints), limited where `max` is set.
#[derive(Debug)]
struct Concurrency {
    max: Option<u32>,
    cell: Arc<ConcurrencyCell>,
}

/// One level of the hierarchy with its limits.
#[derive(Debug)]
struct Level {
    id: LevelId,
    name: Arc<str>,
    concurrency: Option<Concurrency>,
    /// Requests, then tokens, then budgets in snapshot order.
    counters: Vec<Counter>,
}

impl Level {
    /// No limit at all (in-flight counting alone is not a limit).
    fn is_empty(&self) -> bool {
        self.concurrency.as_ref().is_none_or(|c| c.max.is_none()) && self.counters.is_empty()
    }

    fn has_budget(&self) -> bool {
        self.counters.iter().any(|c| c.unit == Unit::Cost)
    }
}

/// The levels above a virtual key's provider configs, and the configs with limits.
#[derive(Debug)]
struct Chain {
    /// Virtual key, team, customer: those that have limits, in that order.
    levels: Vec<Arc<Level>>,
    providers: Vec<(Arc<str>, Arc<Level>)>,
    has_budget: bool,
    fail_open: bool,
}

#[derive(Debug, Clone)]
enum Cell {
    Window(Arc<WindowCell>),
    Concurrency(Arc<ConcurrencyCell>),
}

/// Budgets, rate limits and concurrency of one snapshot, over counters that outlive it.
#[derive(Debug)]
pub struct Engine {
    /// Every virtual key's chain, by id.
    keys: HashMap<Arc<str>, Chain>,
    cells: HashMap<CellKey, Cell>,
    /// Every window counter once, with its limit (for reports).
    window_counters: Vec<(Arc<WindowCell>, u64)>,
    /// Every level that counts requests in flight, once.
    in_flight: Vec<(LevelId, Arc<ConcurrencyCell>)>,
    fleet: Arc<FleetState>,
}

/// What this data plane knows of its fleet, which outlives every engine it compiles: whether
/// the control plane answers, and this node's [`Share`] of every limit. The data plane owns one
/// (`RuntimeHandle`) and compiles every engine with it, so it can be set before any config.
#[derive(Debug)]
pub struct FleetState {
    unreachable: AtomicBool,
    /// The share, packed (`slot << 32 | of`).
    share: AtomicU64,
}

impl Default for FleetState {
    fn default() -> Self {
        FleetState {
            unreachable: AtomicBool::new(false),
            share: AtomicU64::new(Share::WHOLE.pack()),
        }
    }
}

impl FleetState {
    /// Whether the control plane can be reached (default: reachable). While it cannot,
    /// fail-open keys are admitted beyond this node's allowances, up to the limits.
    pub fn set_control_plane_reachable(&self, reachable: bool) {
        self.unreachable.store(!reachable, Ordering::Relaxed);
    }

    pub fn control_plane_reachable(&self) -> bool {
        !self.unreachable.load(Ordering::Relaxed)
    }

    /// This node's share of every limit. Counters admit up to it unless the control plane
    /// granted another allowance.
    pub fn set_share(&self, share: Share) {
        self.share.store(share.pack(), Ordering::Relaxed);
    }

    pub fn share(&self) -> Share {
        Share::unpack(self.share.load(Ordering::Relaxed))
    }
}

/// This data plane's share of every limit in a fleet (the control plane's `FleetShare`): slot
/// `slot` of `of` admits `limit / of`, plus one unit while `slot < limit % of`, so the shares of
/// a fleet add up to each limit exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub slot: u32,
    pub of: u32,
}

impl Share {
    /// A fleet of one (and all-in-one): the whole limit.
    pub const WHOLE: Share = Share { slot: 0, of: 1 };

    /// This share of `limit`.
    pub fn of_limit(self, limit: u64) -> u64 {
        tollgate_proto::share::share_of_limit(limit, self.slot, self.of)
    }

    fn pack(self) -> u64 {
        (u64::from(self.slot) << 32) | u64::from(self.of.max(1))
    }

    fn unpack(v: u64) -> Share {
        Share {
            slot: (v >> 32) as u32,
            of: (v as u32).max(1),
        }
    }
}

/// Cells of the engine being compiled, reusing those of the previous one.
struct Cells<'a> {
    previous: Option<&'a HashMap<CellKey, Cell>>,
    cells: HashMap<CellKey, Cell>,
    window_counters: Vec<(Arc<WindowCell>, u64)>,
    in_flight: Vec<(LevelId, Arc<ConcurrencyCell>)>,
}

impl Cells<'_> {
    fn window(&mut self, level: &LevelId, counter: CounterId, spec: WindowSpec) -> Arc<WindowCell> {
        let key = CellKey {
            level: level.clone(),
            counter,
        };
        let reuse = |cell: &Cell| match cell {
            Cell::Window(w) => Some(Arc::clone(w)),
            Cell::Concurrency(_) => None,
        };
        if let Some(found) = self.cells.get(&key).and_then(reuse) {
            return found;
        }
        let cell = self
            .previous
            .and_then(|p| p.get(&key))
            .and_then(reuse)
            .unwrap_or_else(|| Arc::new(WindowCell::new(key.clone(), spec)));
        self.cells.insert(key, Cell::Window(Arc::clone(&cell)));
        cell
    }

    fn concurrency(&mut self, level: &LevelId) -> Arc<ConcurrencyCell> {
        let key = CellKey {
            level: level.clone(),
            counter: CounterId::Concurrency,
        };
        let reuse = |cell: &Cell| match cell {
            Cell::Concurrency(c) => Some(Arc::clone(c)),
            Cell::Window(_) => None,
        };
        if let Some(found) = self.cells.get(&key).and_then(reuse) {
            return found;
        }
        let cell = self
            .previous
            .and_then(|p| p.get(&key))
            .and_then(reuse)
            .unwrap_or_default();
        self.cells.insert(key, Cell::Concurrency(Arc::clone(&cell)));
        cell
    }

    /// Compiles one level. `count_in_flight`: count its requests in flight even without a
    /// concurrency limit (virtual keys, teams, customers).
    fn level(
        &mut self,
        id: LevelId,
        name: &str,
        limits: Option<&pb::Limits>,
        count_in_flight: bool,
    ) -> Result<Level, LimitsError> {
        let mut level = Level {
            name: name.into(),
            concurrency: None,
            counters: Vec::new(),
            id,
        };
        let max_concurrent = limits.map_or(0, |l| l.max_concurrent);
        if max_concurrent > 0 || count_in_flight {
            let cell = self.concurrency(&level.id);
            self.in_flight.push((level.id.clone(), Arc::clone(&cell)));
            level.concurrency = Some(Concurrency {
                max: (max_concurrent > 0).then_some(max_concurrent),
                cell,
            });
        }
        let Some(limits) = limits else {
            return Ok(level);
        };
        if let Some(rl) = &limits.rate_limit {
            for (unit, max, reset) in [
                (Unit::Requests, rl.request_max_limit, rl.request_reset),
                (Unit::Tokens, rl.token_max_limit, rl.token_reset),
            ] {
                if max == 0 {
                    continue;
                }
                let what = if unit == Unit::Requests {
                    "request rate limit"
                } else {
                    "token rate limit"
                };
                let period = period(reset, &level.id, what)?;
                let spec = WindowSpec::calendar(period);
                let counter = if unit == Unit::Requests {
                    CounterId::Requests(spec)
                } else {
                    CounterId::Tokens(spec)
                };
                let cell = self.window(&level.id, counter, spec);
                self.window_counters.push((Arc::clone(&cell), max));
                level.counters.push(Counter {
                    unit,
                    limit: max,
                    reset_at: 0,
                    cell,
                });
            }
        }
        for (i, b) in limits.budgets.iter().enumerate() {
            if limits.budgets[..i].iter().any(|other| other.id == b.id) {
                return Err(LimitsError::DuplicateBudget {
                    level: level.id.to_string(),
                    budget: b.id.clone(),
                });
            }
            let period = period(b.reset, &level.id, "budget")?;
            let spec = WindowSpec::new(period, b.calendar_aligned, b.anchor_unix_ms);
            let counter = CounterId::Budget(b.id.as_str().into(), spec);
            let cell = self.window(&level.id, counter, spec);
            self.window_counters
                .push((Arc::clone(&cell), b.max_limit_nano_usd));
            level.counters.push(Counter {
                unit: Unit::Cost,
                limit: b.max_limit_nano_usd,
                reset_at: b.reset_at_unix_ms,
                cell,
            });
        }
        Ok(level)
    }
}

fn period(value: i32, level: &LevelId, what: &'static str) -> Result<Period, LimitsError> {
    Period::from_pb(value).ok_or_else(|| LimitsError::MissingPeriod {
        level: level.to_string(),
        what,
    })
}

impl Engine {
    /// Compiles the limits of a snapshot with fresh counters.
    pub fn compile(snapshot: &pb::Snapshot) -> Result<Engine, LimitsError> {
        Engine::compile_after(snapshot, None)
    }

    /// Compiles the limits of a snapshot, carrying over the counters of `previous` whose
    /// identity (level, counter, window definition) the snapshot still has, and its
    /// [`FleetState`].
    pub fn compile_after(
        snapshot: &pb::Snapshot,
        previous: Option<&Engine>,
    ) -> Result<Engine, LimitsError> {
        let fleet = previous.map(|p| Arc::clone(&p.fleet)).unwrap_or_default();
        Engine::compile_in(snapshot, previous, fleet)
    }

    /// [`Engine::compile_after`] with the data plane's [`FleetState`].
    pub fn compile_in(
        snapshot: &pb::Snapshot,
        previous: Option<&Engine>,
        fleet: Arc<FleetState>,
    ) -> Result<Engine, LimitsError> {
        let mut cells = Cells {
            previous: previous.map(|p| &p.cells),
            cells: HashMap::new(),
            window_counters: Vec::new(),
            in_flight: Vec::new(),
        };
        let mut customers: HashMap<&str, Arc<Level>> =
            HashMap::with_capacity(snapshot.customers.len());
        for c in &snapshot.customers {
            let level = cells.level(
                LevelId::Customer(c.id.as_str().into()),
                &c.name,
                c.limits.as_ref(),
                true,
            )?;
            if customers.insert(&c.id, Arc::new(level)).is_some() {
                return Err(LimitsError::Duplicate(
                    LevelId::Customer(c.id.as_str().into()).to_string(),
                ));
            }
        }
        let customer = |owner: &LevelId, id: &str| -> Result<Option<Arc<Level>>, LimitsError> {
            if id.is_empty() {
                return Ok(None);
            }
            customers
                .get(id)
                .map(|l| Some(Arc::clone(l)))
                .ok_or_else(|| LimitsError::UnknownCustomer {
                    owner: owner.to_string(),
                    customer: id.to_owned(),
                })
        };
        // Each team with its customer.
        let mut teams: HashMap<&str, (Arc<Level>, Option<Arc<Level>>)> =
            HashMap::with_capacity(snapshot.teams.len());
        for t in &snapshot.teams {
            let id = LevelId::Team(t.id.as_str().into());
            let owner = customer(&id, &t.customer_id)?;
            let level = cells.level(id, &t.name, t.limits.as_ref(), true)?;
            if teams.insert(&t.id, (Arc::new(level), owner)).is_some() {
                return Err(LimitsError::Duplicate(
                    LevelId::Team(t.id.as_str().into()).to_string(),
                ));
            }
        }
        let mut keys = HashMap::new();
        for vk in &snapshot.virtual_keys {
            let key_id: Arc<str> = vk.id.as_str().into();
            let id = LevelId::VirtualKey(Arc::clone(&key_id));
            if !vk.team_id.is_empty() && !vk.customer_id.is_empty() {
                return Err(LimitsError::TeamAndCustomer(id.to_string()));
            }
            let (team, cust) = if vk.team_id.is_empty() {
                (None, customer(&id, &vk.customer_id)?)
            } else {
                let (team, cust) =
                    teams
                        .get(vk.team_id.as_str())
                        .ok_or_else(|| LimitsError::UnknownTeam {
                            key: id.to_string(),
                            team: vk.team_id.clone(),
                        })?;
                (Some(Arc::clone(team)), cust.clone())
            };
            let mut providers: Vec<(Arc<str>, Arc<Level>)> = Vec::new();
            for pc in &vk.provider_configs {
                if providers.iter().any(|(p, _)| **p == *pc.provider) {
                    return Err(LimitsError::DuplicateProviderConfig {
                        key: id.to_string(),
                        provider: pc.provider.clone(),
                    });
                }
                let level_id = LevelId::ProviderConfig {
                    virtual_key_id: Arc::clone(&key_id),
                    provider: pc.provider.as_str().into(),
                };
                let level = cells.level(level_id, &pc.provider, pc.limits.as_ref(), false)?;
                providers.push((pc.provider.as_str().into(), Arc::new(level)));
            }
            providers.retain(|(_, l)| !l.is_empty());
            let key = Arc::new(cells.level(id, &vk.name, vk.limits.as_ref(), true)?);
            // Every level counts requests in flight, so every key has a chain.
            let levels: Vec<Arc<Level>> = [Some(key), team, cust].into_iter().flatten().collect();
            let chain = Chain {
                has_budget: levels.iter().any(|l| l.has_budget()),
                levels,
                providers,
                fail_open: vk.fail_open,
            };
            match keys.entry(key_id) {
                Entry::Occupied(e) => {
                    return Err(LimitsError::Duplicate(
                        LevelId::VirtualKey(Arc::clone(e.key())).to_string(),
                    ));
                }
                Entry::Vacant(e) => {
                    e.insert(chain);
                }
            }
        }
        Ok(Engine {
            keys,
            cells: cells.cells,
            window_counters: cells.window_counters,
            in_flight: cells.in_flight,
            fleet,
        })
    }

    /// Admits a request of `virtual_key_id` routed to `provider`, before its upstream call:
    /// checks every level of its chain (provider config, key, team, customer) and reserves at
    /// all of them (counting it in flight there), or refuses and reserves nothing.
    /// `estimated_cost` is `None` for a model without a price (refused when the chain has a
    /// budget). Keys the engine does not know are admitted and counted nowhere.
    pub fn admit(
        &self,
        virtual_key_id: &str,
        provider: &str,
        estimated_cost: Option<Cost>,
        estimated_tokens: u64,
        now_unix_ms: i64,
    ) -> Result<Reservation, Refusal> {
        let Some(chain) = self.keys.get(virtual_key_id) else {
            return Ok(Reservation::new(0, 0, 0));
        };
        let provider_level = chain
            .providers
            .iter()
            .find(|(p, _)| **p == *provider)
            .map(|(_, l)| l);
        let levels = provider_level.into_iter().chain(chain.levels.iter());
        if estimated_cost.is_none()
            && (chain.has_budget || provider_level.is_some_and(|l| l.has_budget()))
        {
            let level = levels.clone().find(|l| l.has_budget());
            let (level, budget_id) = level
                .and_then(|l| {
                    let b = l.counters.iter().find(|c| c.unit == Unit::Cost)?;
                    match &b.cell.key.counter {
                        CounterId::Budget(id, _) => Some((l, Arc::clone(id))),
                        _ => None,
                    }
                })
                .map_or((None, "".into()), |(l, id)| (Some(l), id));
            let (level, level_name) = level.map_or_else(
                || (LevelId::VirtualKey(virtual_key_id.into()), "".into()),
                |l| (l.id.clone(), Arc::clone(&l.name)),
            );
            return Err(Refusal {
                level,
                level_name,
                exhausted: Exhausted::Unpriced { budget_id },
                temporary: false,
            });
        }
        let counters = levels.clone().map(|l| l.counters.len()).sum();
        let mut reservation = Reservation::new(
            counters,
            estimated_cost.map_or(0, |c| c.0),
            estimated_tokens,
        );
        let fail_open = chain.fail_open && !self.fleet.control_plane_reachable();
        let share = self.fleet.share();
        for level in levels {
            if let Err((exhausted, temporary)) =
                reservation.charge_level(level, now_unix_ms, fail_open, share)
            {
                reservation.roll_back();
                return Err(Refusal {
                    level: level.id.clone(),
                    level_name: Arc::clone(&level.name),
                    exhausted,
                    // Nothing moves while the control plane is away.
                    temporary: temporary && self.fleet.control_plane_reachable(),
                });
            }
        }
        Ok(reservation)
    }

    /// The [`FleetState`] this engine was compiled with (shared with the engines compiled
    /// after it).
    pub fn fleet(&self) -> &FleetState {
        &self.fleet
    }

    pub(crate) fn fleet_arc(&self) -> Arc<FleetState> {
        Arc::clone(&self.fleet)
    }

    /// Shorthand for [`FleetState::set_control_plane_reachable`].
    pub fn set_control_plane_reachable(&self, reachable: bool) {
        self.fleet.set_control_plane_reachable(reachable);
    }

    /// Shorthand for [`FleetState::set_share`].
    pub fn set_share(&self, share: Share) {
        self.fleet.set_share(share);
    }

    /// Sets this node's allowance of a window counter for the window starting at
    /// `window_start_unix_ms` (the current or a later one; above the limit it counts as the
    /// limit; `fleet_exhausted`: nothing is left of the limit in the fleet, so refusals for want
    /// of allowance are final). `false` if the engine has no such window counter.
    pub fn grant(
        &self,
        cell: &CellKey,
        window_start_unix_ms: i64,
        amount: u64,
        fleet_exhausted: bool,
    ) -> bool {
        match self.cells.get(cell) {
            Some(Cell::Window(w)) => {
                w.grant(window_start_unix_ms, amount, fleet_exhausted);
                true
            }
            _ => false,
        }
    }

    /// What this node holds of its limits now: the window counters with use or a grant in the
    /// window holding `now_unix_ms` (their use, reservations included, their allowance and
    /// what they refused for want of it) — all of them when `full`, else those that changed
    /// since they were last listed — and every level with requests in flight.
    pub fn report(&self, now_unix_ms: i64, full: bool) -> UseReport {
        let share = self.fleet.share();
        let mut counters = Vec::new();
        let mut holdings = Vec::new();
        for (cell, limit) in &self.window_counters {
            cell.holdings(
                now_unix_ms,
                share.of_limit(*limit),
                *limit,
                !full,
                &mut holdings,
            );
            counters.extend(holdings.drain(..).map(|h| CounterHolding {
                cell: cell.key.clone(),
                window: h.window,
                limit: *limit,
                used: h.used,
                wanted: h.wanted,
                allowance: h.allowance,
            }));
        }
        UseReport {
            full,
            counters,
            in_flight: self.in_flight_now(),
        }
    }

    /// The levels with requests in flight and how many (a [`Engine::report`] without counters:
    /// all-in-one's, whose single node holds every limit whole).
    pub fn in_flight_report(&self) -> UseReport {
        UseReport {
            in_flight: self.in_flight_now(),
            ..UseReport::default()
        }
    }

    fn in_flight_now(&self) -> Vec<(LevelId, u32)> {
        self.in_flight
            .iter()
            .filter_map(|(level, cell)| {
                let n = cell.in_flight();
                (n > 0).then(|| (level.clone(), n))
            })
            .collect()
    }

    /// Every budget of a virtual key's chain (its provider configs, the key, its team, its
    /// customer, in that order), with what this node counts in the window holding
    /// `now_unix_ms` (used and reserved here). For `GET /v1/key`; empty for a key the engine
    /// does not know.
    pub fn key_budgets(&self, virtual_key_id: &str, now_unix_ms: i64) -> Vec<BudgetView> {
        let Some(chain) = self.keys.get(virtual_key_id) else {
            return Vec::new();
        };
        chain
            .providers
            .iter()
            .map(|(_, l)| l)
            .chain(chain.levels.iter())
            .flat_map(|level| {
                level.counters.iter().filter_map(move |c| {
                    let CounterId::Budget(id, spec) = &c.cell.key.counter else {
                        return None;
                    };
                    let usage = c.cell.usage(now_unix_ms);
                    Some(BudgetView {
                        level: level.id.clone(),
                        level_name: Arc::clone(&level.name),
                        budget_id: Arc::clone(id),
                        period: spec.period,
                        limit_nano_usd: c.limit,
                        used_nano_usd: usage.used.saturating_add(usage.reserved),
                        window: usage.window,
                    })
                })
            })
            .collect()
    }

    /// The levels above a virtual key's provider configs (the key, its team, its customer)
    /// with their names; empty for a key the engine does not know.
    pub fn key_levels(&self, virtual_key_id: &str) -> Vec<(LevelId, Arc<str>)> {
        self.keys
            .get(virtual_key_id)
            .map_or_else(Vec::new, |chain| {
                chain
                    .levels
                    .iter()
                    .map(|l| (l.id.clone(), Arc::clone(&l.name)))
                    .collect()
            })
    }

    /// The keys of every counter of this engine.
    pub fn cell_keys(&self) -> impl Iterator<Item = &CellKey> {
        self.cells.keys()
    }

    /// A window counter's figures in the window holding `now_unix_ms`.
    pub fn usage(&self, cell: &CellKey, now_unix_ms: i64) -> Option<CellUsage> {
        match self.cells.get(cell)? {
            Cell::Window(w) => Some(w.usage(now_unix_ms)),
            Cell::Concurrency(_) => None,
        }
    }

    /// Requests in flight at a level that counts them (virtual keys, teams, customers, and
    /// provider configs with a concurrency limit).
    pub fn in_flight(&self, level: &LevelId) -> Option<u32> {
        let key = CellKey {
            level: level.clone(),
            counter: CounterId::Concurrency,
        };
        match self.cells.get(&key)? {
            Cell::Concurrency(c) => Some(c.in_flight()),
            Cell::Window(_) => None,
        }
    }
}

/// One budget of a virtual key's chain as this node sees it ([`Engine::key_budgets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetView {
    pub level: LevelId,
    /// The level's name (the key's, its team's, its customer's; a provider config's provider).
    pub level_name: Arc<str>,
    pub budget_id: Arc<str>,
    pub period: Period,
    pub limit_nano_usd: u64,
    /// Settled and reserved spend counted here in the current window.
    pub used_nano_usd: u64,
    pub window: Window,
}

/// One charge held by a reservation.
#[derive(Debug)]
struct Held {
    cell: Arc<WindowCell>,
    window_start: i64,
    unit: Unit,
    amount: u64,
}

/// An admitted request: holds its concurrency slots and the estimates reserved in its
/// windows until it is settled. Dropping it unsettled (any early exit) settles it as cost 0
/// and no tokens; its request counts stay (the request was made).
#[must_use = "dropping a reservation settles it as cost 0"]
#[derive(Debug)]
pub struct Reservation {
    held: Vec<Held>,
    /// In-flight slots taken, one per level at most (a chain has at most four levels).
    slots: [Option<Arc<ConcurrencyCell>>; 4],
    estimated_cost: u64,
    estimated_tokens: u64,
    fail_open: bool,
}

impl Reservation {
    fn new(counters: usize, estimated_cost: u64, estimated_tokens: u64) -> Reservation {
        Reservation {
            held: Vec::with_capacity(counters),
            slots: Default::default(),
            estimated_cost,
            estimated_tokens,
            fail_open: false,
        }
    }

    /// Whether some counter admitted this request only because its key is fail-open and the
    /// control plane is unreachable.
    pub fn admitted_fail_open(&self) -> bool {
        self.fail_open
    }

    fn charge_level(
        &mut self,
        level: &Level,
        now: i64,
        fail_open: bool,
        share: Share,
    ) -> Result<(), (Exhausted, bool)> {
        if let Some(c) = &level.concurrency {
            let mine = c.max.map_or(u32::MAX, |max| {
                u32::try_from(share.of_limit(u64::from(max))).unwrap_or(max)
            });
            if !c.cell.try_acquire(mine) {
                return Err((
                    Exhausted::Concurrency {
                        limit: c.max.unwrap_or(u32::MAX),
                    },
                    false,
                ));
            }
            match self.slots.iter_mut().find(|s| s.is_none()) {
                Some(free) => *free = Some(Arc::clone(&c.cell)),
                // Unreachable (four levels at most); never leak the slot.
                None => c.cell.release(),
            }
        }
        for counter in &level.counters {
            let (amount, charge) = match counter.unit {
                Unit::Requests => (1, Charge::Count),
                Unit::Tokens => (self.estimated_tokens, Charge::Reserve),
                Unit::Cost => (self.estimated_cost, Charge::Reserve),
            };
            let ask = Ask {
                now,
                amount,
                charge,
                limit: counter.limit,
                allowance: share.of_limit(counter.limit),
                reset_at: counter.reset_at,
                fail_open,
            };
            match counter.cell.try_charge(&ask) {
                Ok(charged) => {
                    self.fail_open |= charged.fail_open;
                    self.held.push(Held {
                        cell: Arc::clone(&counter.cell),
                        window_start: charged.window_start,
                        unit: counter.unit,
                        amount,
                    });
                }
                Err(full) => {
                    let period = counter.cell.spec.period;
                    let resets_at_unix_ms = full.window.end_unix_ms;
                    let exhausted = match (&counter.cell.key.counter, counter.unit) {
                        (CounterId::Budget(id, _), _) => Exhausted::Budget {
                            budget_id: Arc::clone(id),
                            period,
                            limit_nano_usd: counter.limit,
                            resets_at_unix_ms,
                        },
                        (_, Unit::Tokens) => Exhausted::Tokens {
                            period,
                            limit: counter.limit,
                            resets_at_unix_ms,
                        },
                        _ => Exhausted::Requests {
                            period,
                            limit: counter.limit,
                            resets_at_unix_ms,
                        },
                    };
                    return Err((exhausted, full.temporary));
                }
            }
        }
        Ok(())
    }

    /// Undoes every charge (an admission refused further down the chain).
    fn roll_back(&mut self) {
        for h in self.held.drain(..) {
            let charge = if h.unit == Unit::Requests {
                Charge::Count
            } else {
                Charge::Reserve
            };
            h.cell.undo(h.window_start, h.amount, charge);
        }
        self.release_slots();
    }

    fn release_slots(&mut self) {
        for slot in &mut self.slots {
            if let Some(cell) = slot.take() {
                cell.release();
            }
        }
    }

    /// Takes the admission back as if it never happened: request counts, reservations and
    /// slots (an attempt given up for a fallback, which is admitted on its own).
    pub fn cancel(mut self) {
        self.roll_back();
    }

    /// Ends the request: the actual cost (`None`: unpriced, the estimate stays charged) and
    /// tokens replace the estimates in the windows the request was admitted in, and the
    /// concurrency slots are released.
    pub fn settle(mut self, actual_cost_nano_usd: Option<u64>, actual_tokens: u64) {
        self.finish(actual_cost_nano_usd, actual_tokens);
    }

    fn finish(&mut self, actual_cost: Option<u64>, actual_tokens: u64) {
        for h in self.held.drain(..) {
            let actual = match h.unit {
                Unit::Requests => continue,
                Unit::Tokens => actual_tokens,
                Unit::Cost => actual_cost.unwrap_or(h.amount),
            };
            h.cell.settle(h.window_start, h.amount, actual);
        }
        self.release_slots();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.finish(Some(0), 0);
    }
}
