//! The daemon's one event loop: it waits on signals, timers and sockets at
//! once, in one `poll`, and says which of them is ready.
//!
//! Signals arrive through a signalfd: SIGINT, SIGTERM and SIGHUP are blocked
//! for the whole process before anything else starts, so none of them runs a
//! handler and the order in which anything was installed does not matter.
//! Timers are deadlines kept here (poll's timeout), sockets are file
//! descriptors registered with a token of the caller's choosing.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// What woke the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<T> {
    /// SIGINT or SIGTERM: detach and exit.
    Stop(Signal),
    /// SIGHUP: re-read the configuration.
    Reload,
    /// A timer set with [`EventLoop::every`] or [`EventLoop::after`] is due.
    Timer(T),
    /// A descriptor registered with [`EventLoop::watch`] is readable.
    Readable(T),
}

struct Timer<T> {
    token: T,
    /// None: fires once.
    every: Option<Duration>,
    due: Instant,
}

pub struct EventLoop<T> {
    signals: SignalFd,
    timers: Vec<Timer<T>>,
    fds: Vec<(OwnedFd, T)>,
    /// Where the next search for a ready descriptor starts: one after the
    /// last one reported, so that one that stays ready (a flooded
    /// listener) cannot starve those after it.
    next: usize,
    /// Whether ready descriptors go before due timers in the next wait
    /// (set after a timer event, cleared after a descriptor's).
    descriptors_turn: bool,
}

/// The signals the loop handles. Blocking them must happen before any
/// thread starts, so that no thread takes one the old way.
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

impl<T: Copy + PartialEq> EventLoop<T> {
    /// Blocks SIGINT, SIGTERM and SIGHUP for this thread (and every thread
    /// it starts later) and opens the signalfd that receives them.
    pub fn new() -> Result<Self> {
        let set = handled();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
            .context("blocking SIGINT, SIGTERM and SIGHUP")?;
        let signals = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .context("opening a signalfd")?;
        Ok(EventLoop {
            signals,
            timers: Vec::new(),
            fds: Vec::new(),
            next: 0,
            descriptors_turn: false,
        })
    }

    /// A timer that fires every `every`, first after one period.
    pub fn every(&mut self, token: T, every: Duration) {
        self.timers.push(Timer {
            token,
            every: Some(every),
            due: Instant::now() + every,
        });
    }

    /// A timer that fires once, after `delay`. Several may share a token;
    /// each fires on its own.
    pub fn after(&mut self, token: T, delay: Duration) {
        self.timers.push(Timer {
            token,
            every: None,
            due: Instant::now() + delay,
        });
    }

    /// Reports `Readable(token)` whenever `fd` has data.
    pub fn watch(&mut self, fd: OwnedFd, token: T) {
        self.fds.push((fd, token));
    }

    /// The descriptor registered under `token`.
    pub fn fd(&self, token: T) -> Option<BorrowedFd<'_>> {
        self.fds
            .iter()
            .find(|(_, t)| *t == token)
            .map(|(fd, _)| fd.as_fd())
    }

    /// Waits for the next event. Signals come first, so that a busy socket
    /// cannot delay a stop; due timers and ready descriptors then take
    /// turns. (Timers simply first would starve every descriptor when
    /// handling events takes longer than a timer's period — a loaded or
    /// emulated machine, the 100 ms socket-table check — as a timer would
    /// be due every time: link events, the control socket and /metrics
    /// would never be read.)
    pub fn wait(&mut self) -> Result<Event<T>> {
        self.wait_with(&[])
    }

    /// As [`wait`](Self::wait), also watching `extra`: descriptors owned
    /// elsewhere (a server's listener and its short-lived clients, health
    /// probes), each for what its flags say (POLLIN, or POLLOUT for a
    /// connect under way); either readiness is reported as `Readable`.
    pub fn wait_with(&mut self, extra: &[(BorrowedFd<'_>, T, PollFlags)]) -> Result<Event<T>> {
        loop {
            if let Some(e) = self.signal()? {
                return Ok(e);
            }
            let now = Instant::now();
            let due = self.timers.iter().any(|t| t.due <= now);
            if due && !self.descriptors_turn {
                self.descriptors_turn = true;
                if let Some(token) = self.take_due(now) {
                    return Ok(Event::Timer(token));
                }
            }
            let timeout = match self.timers.iter().map(|t| t.due).min() {
                // A timer is due: only look at what is ready now.
                _ if due => PollTimeout::ZERO,
                // Rounded up: waking a little late beats spinning early.
                Some(due) => {
                    let ms = (due - now).as_micros().div_ceil(1000);
                    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            let tokens: Vec<T> = self
                .fds
                .iter()
                .map(|(_, t)| *t)
                .chain(extra.iter().map(|(_, t, _)| *t))
                .collect();
            let mut pfds: Vec<PollFd<'_>> = std::iter::once(self.signals.as_fd())
                .chain(self.fds.iter().map(|(fd, _)| fd.as_fd()))
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                .chain(extra.iter().map(|(fd, _, f)| PollFd::new(*fd, *f)))
                .collect();
            match poll(&mut pfds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("waiting for events"),
            }
            let ready = |p: &PollFd<'_>| p.revents().is_some_and(|r| !r.is_empty());
            if ready(&pfds[0]) {
                continue; // read at the top
            }
            let n = tokens.len();
            let start = self.next % n.max(1);
            if let Some(i) = (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| ready(&pfds[1 + i]))
            {
                self.next = i + 1;
                self.descriptors_turn = false;
                return Ok(Event::Readable(tokens[i]));
            }
            // Nothing ready: the due timer, if any, at the top.
            self.descriptors_turn = false;
        }
    }

    /// The earliest timer due at `now`, if any: a periodic one is set to
    /// its next period after `now`, a one-shot one removed.
    fn take_due(&mut self, now: Instant) -> Option<T> {
        let i = (self.timers.iter().enumerate())
            .filter(|(_, t)| t.due <= now)
            .min_by_key(|(_, t)| t.due)
            .map(|(i, _)| i)?;
        let t = &mut self.timers[i];
        let token = t.token;
        match t.every {
            // Periods that passed while the loop was busy are skipped, not
            // fired in a burst.
            Some(every) => {
                while t.due <= now {
                    t.due += every;
                }
            }
            None => drop(self.timers.remove(i)),
        }
        Some(token)
    }

    /// A pending signal, if any.
    fn signal(&mut self) -> Result<Option<Event<T>>> {
        match self.signals.read_signal() {
            Ok(Some(info)) => Ok(Some(match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGHUP) => Event::Reload,
                Ok(s) => Event::Stop(s),
                Err(_) => Event::Stop(Signal::SIGTERM),
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(e).context("reading the signalfd"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Tok {
        Fast,
        Slow,
        Sock,
    }

    // Each test runs in a thread of its own: raise() signals that thread,
    // which blocks the signal, so the test process never sees a handler run.

    #[test]
    fn signals_arrive_as_events_whatever_else_is_due() {
        let mut ev = EventLoop::<Tok>::new().unwrap();
        ev.every(Tok::Fast, Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        nix::sys::signal::raise(Signal::SIGHUP).unwrap();
        nix::sys::signal::raise(Signal::SIGTERM).unwrap();
        // Signals first, although the timer is overdue; standard signals
        // are delivered lowest number first (SIGHUP 1, SIGTERM 15).
        assert_eq!(ev.wait().unwrap(), Event::Reload);
        assert_eq!(ev.wait().unwrap(), Event::Stop(Signal::SIGTERM));
        assert_eq!(ev.wait().unwrap(), Event::Timer(Tok::Fast));
        nix::sys::signal::raise(Signal::SIGINT).unwrap();
        assert_eq!(ev.wait().unwrap(), Event::Stop(Signal::SIGINT));
    }

    /// Every timer event due up to `until`, stepping a clock of our own
    /// 1 ms at a time from `start`: (ms since `start`, token).
    fn fired(ev: &mut EventLoop<Tok>, start: Instant, until: u64) -> Vec<(u64, Tok)> {
        let mut seen = Vec::new();
        for ms in 0..=until {
            while let Some(t) = ev.take_due(start + Duration::from_millis(ms)) {
                seen.push((ms, t));
            }
        }
        seen
    }

    /// The timetable itself, on a clock the test moves (no wall-clock
    /// slack to miss): each period once, in order, and a busy stretch
    /// costs the periods it covered rather than firing them in a burst.
    #[test]
    fn timers_fire_at_their_period_and_skip_missed_ones() {
        use Tok::*;
        let mut ev = EventLoop::<Tok>::new().unwrap();
        let start = Instant::now();
        for (token, every) in [(Fast, 20), (Slow, 50)] {
            ev.timers.push(Timer {
                token,
                every: Some(Duration::from_millis(every)),
                due: start + Duration::from_millis(every),
            });
        }
        assert_eq!(
            fired(&mut ev, start, 110),
            [
                (20, Fast),
                (40, Fast),
                (50, Slow),
                (60, Fast),
                (80, Fast),
                (100, Fast),
                (100, Slow)
            ]
        );
        // Busy until 215 ms: one event of each timer, not a burst; then
        // each keeps its own phase (Fast at 220, Slow at 250).
        let late = start + Duration::from_millis(215);
        assert_eq!(ev.take_due(late), Some(Fast));
        assert_eq!(ev.take_due(late), Some(Slow));
        assert_eq!(ev.take_due(late), None);
        let after: Vec<_> = fired(&mut ev, start, 260)
            .into_iter()
            .filter(|(ms, _)| *ms > 215)
            .collect();
        assert_eq!(after, [(220, Fast), (240, Fast), (250, Slow), (260, Fast)]);
    }

    /// The same timers through poll: never early (a loaded machine can
    /// only make them late), and never more than one event per period.
    #[test]
    fn timers_wake_the_loop_never_early() {
        let start = Instant::now();
        let mut ev = EventLoop::<Tok>::new().unwrap();
        ev.every(Tok::Fast, Duration::from_millis(20));
        ev.every(Tok::Slow, Duration::from_millis(50));
        let (mut fast, mut slow) = (0u32, 0u32);
        while slow < 2 {
            let e = ev.wait().unwrap();
            let at = start.elapsed();
            match e {
                Event::Timer(Tok::Fast) => fast += 1,
                Event::Timer(Tok::Slow) => slow += 1,
                other => panic!("{other:?}"),
            }
            assert!(
                at >= Duration::from_millis(20) * fast,
                "Fast #{fast} at {at:?}"
            );
            assert!(
                at >= Duration::from_millis(50) * slow,
                "Slow #{slow} at {at:?}"
            );
        }
        // Fast's periods before Slow's second one (at 100 ms): 20 to 80
        // ms, and the one at 100 ms at most (a tie goes to the timer set
        // first); fewer if the machine held the thread past some of them.
        assert!((1..=5).contains(&fast), "{fast}");
    }

    #[test]
    fn one_shot_timers_fire_once_each_in_order() {
        let mut ev = EventLoop::<Tok>::new().unwrap();
        ev.after(Tok::Slow, Duration::from_millis(30));
        ev.after(Tok::Fast, Duration::from_millis(10));
        ev.every(Tok::Sock, Duration::from_millis(100));
        assert_eq!(ev.wait().unwrap(), Event::Timer(Tok::Fast));
        assert_eq!(ev.wait().unwrap(), Event::Timer(Tok::Slow));
        assert_eq!(ev.wait().unwrap(), Event::Timer(Tok::Sock));
        assert_eq!(ev.wait().unwrap(), Event::Timer(Tok::Sock));
    }

    #[test]
    fn a_readable_socket_wakes_the_loop() {
        let mut ev = EventLoop::<Tok>::new().unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        ev.watch(OwnedFd::from(rx), Tok::Sock);
        ev.every(Tok::Slow, Duration::from_secs(3600));
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", to).unwrap();
        assert_eq!(ev.wait().unwrap(), Event::Readable(Tok::Sock));
        assert!(ev.fd(Tok::Sock).is_some());
    }

    /// Handling each event takes longer than the timer's period (a
    /// loaded or emulated machine), so a timer is due at every wait: the
    /// descriptor still gets every other turn.
    #[test]
    fn an_always_due_timer_starves_no_descriptor() {
        let mut ev = EventLoop::<Tok>::new().unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        ev.watch(OwnedFd::from(rx), Tok::Sock);
        ev.every(Tok::Fast, Duration::from_millis(1));
        let mut seen = Vec::new();
        for _ in 0..6 {
            // Past the next period: the timer is due again at each wait.
            std::thread::sleep(Duration::from_millis(3));
            seen.push(ev.wait().unwrap());
        }
        let socket = seen
            .iter()
            .filter(|e| **e == Event::Readable(Tok::Sock))
            .count();
        let timer = seen
            .iter()
            .filter(|e| **e == Event::Timer(Tok::Fast))
            .count();
        assert_eq!((socket, timer), (3, 3), "{seen:?}");
    }

    #[test]
    fn a_descriptor_that_stays_ready_starves_no_other() {
        let mut ev = EventLoop::<Tok>::new().unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", a.local_addr().unwrap()).unwrap();
        tx.send_to(b"x", b.local_addr().unwrap()).unwrap();
        ev.watch(OwnedFd::from(a), Tok::Fast);
        ev.watch(OwnedFd::from(b), Tok::Slow);
        // Neither is ever read: both stay ready, and each gets its turn.
        let seen: Vec<_> = (0..4).map(|_| ev.wait().unwrap()).collect();
        for tok in [Tok::Fast, Tok::Slow] {
            let n = seen.iter().filter(|e| **e == Event::Readable(tok)).count();
            assert_eq!(n, 2, "{seen:?}");
        }
    }
}
