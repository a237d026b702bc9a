//! The circuit breaker's state machine on a manual clock: every transition is forced by a
//! counted call or an `advance`, never by a sleep. Configuration: resilience4j's defaults
//! (50 %, minimum 100 calls, a window of 100, 60 s open, 10 probes).

use std::time::Duration;

use lab_retry_storm::breaker::{Breaker, BreakerConfig, State, Window};
use lab_retry_storm::clock::Clock;

fn r4j() -> (Breaker, Clock) {
    let clock = Clock::manual();
    (
        Breaker::new(BreakerConfig::RESILIENCE4J, clock.clone()),
        clock,
    )
}

fn calls(b: &Breaker, ok: u32, failed: u32) {
    for _ in 0..ok {
        b.try_acquire()
            .expect("closed lets calls through")
            .success();
    }
    for _ in 0..failed {
        b.try_acquire()
            .expect("closed lets calls through")
            .failure();
    }
}

/// Open the breaker: 100 failed calls.
fn tripped() -> (Breaker, Clock) {
    let (b, clock) = r4j();
    calls(&b, 0, 100);
    assert_eq!(b.state(), State::Open);
    (b, clock)
}

#[test]
fn the_breaker_judges_nothing_until_the_minimum_calls_are_in() {
    let (b, _) = r4j();
    calls(&b, 0, 99); // 99 calls, 100 % failed — but fewer than minimumNumberOfCalls
    assert_eq!(b.state(), State::Closed);
    calls(&b, 0, 1); // the 100th call: now the rate is judged
    assert_eq!(b.state(), State::Open);
}

#[test]
fn the_breaker_opens_exactly_at_the_failure_rate_threshold() {
    let (b, _) = r4j();
    calls(&b, 51, 49); // 100 calls, 49 % failed
    assert_eq!(b.state(), State::Closed);
    calls(&b, 0, 1); // window: the oldest success leaves, 50 of 100 failed = 50 %
    assert_eq!(b.state(), State::Open);

    let (b, _) = r4j();
    calls(&b, 50, 49); // 99 calls
    assert_eq!(b.state(), State::Closed);
    calls(&b, 0, 1); // 100 calls, 50 failed: at the threshold, not above it
    assert_eq!(b.state(), State::Open);
}

#[test]
fn an_open_breaker_refuses_every_call_until_the_wait_is_over() {
    let (b, clock) = tripped();
    for _ in 0..1000 {
        assert!(b.try_acquire().is_err());
    }
    clock.advance(Duration::from_secs(60) - Duration::from_millis(1));
    assert!(b.try_acquire().is_err(), "59.999 s: still open");
    clock.advance(Duration::from_millis(1));
    let probe = b.try_acquire().expect("60 s: the first probe");
    assert_eq!(b.state(), State::HalfOpen);
    probe.success();
    assert_eq!(b.stats().rejected, 1001);
}

#[test]
fn half_open_lets_exactly_the_configured_probes_through_and_closes_when_they_succeed() {
    let (b, clock) = tripped();
    clock.advance(Duration::from_secs(60));
    let probes: Vec<_> = (0..10)
        .map(|i| b.try_acquire().unwrap_or_else(|e| panic!("probe {i}: {e}")))
        .collect();
    assert!(b.try_acquire().is_err(), "the 11th call is refused");
    for (i, p) in probes.into_iter().enumerate() {
        assert_eq!(b.state(), State::HalfOpen, "after {i} probes reported");
        p.success();
    }
    assert_eq!(b.state(), State::Closed);
    // Closed again, with a fresh window: 99 failures are not judged yet.
    calls(&b, 0, 99);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn half_open_reopens_when_the_probes_fail_and_waits_the_full_time_again() {
    let (b, clock) = tripped();
    clock.advance(Duration::from_secs(60));
    let probes: Vec<_> = (0..10).map(|_| b.try_acquire().unwrap()).collect();
    for (i, p) in probes.into_iter().enumerate() {
        if i < 5 { p.failure() } else { p.success() } // 5 of 10 failed: 50 %
    }
    assert_eq!(b.state(), State::Open);
    clock.advance(Duration::from_secs(59));
    assert!(b.try_acquire().is_err());
    clock.advance(Duration::from_secs(1));
    assert!(b.try_acquire().is_ok());

    // 4 of 10 failing probes (40 %) close it.
    let (b, clock) = tripped();
    clock.advance(Duration::from_secs(60));
    let probes: Vec<_> = (0..10).map(|_| b.try_acquire().unwrap()).collect();
    for (i, p) in probes.into_iter().enumerate() {
        if i < 4 { p.failure() } else { p.success() }
    }
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_cancelled_probe_gives_its_slot_back_instead_of_wedging_half_open() {
    let (b, clock) = tripped();
    clock.advance(Duration::from_secs(60));
    let mut probes: Vec<_> = (0..10).map(|_| b.try_acquire().unwrap()).collect();
    assert!(b.try_acquire().is_err());
    drop(probes.pop()); // the request was cancelled: no outcome
    let replacement = b.try_acquire().expect("the slot came back");
    probes.push(replacement);
    probes.into_iter().for_each(|p| p.success());
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_late_result_from_before_the_breaker_opened_does_not_count() {
    let (b, clock) = r4j();
    let slow = b.try_acquire().unwrap(); // t1: let through while closed, still running
    calls(&b, 0, 100); // the breaker opens
    clock.advance(Duration::from_secs(60));
    let probes: Vec<_> = (0..10).map(|_| b.try_acquire().unwrap()).collect();
    slow.failure(); // t1 finally fails: it belongs to the closed state, not to the probes
    probes.into_iter().for_each(|p| p.success());
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_time_window_that_never_holds_the_minimum_calls_never_opens() {
    // The mis-set breaker: TIME_BASED 1 s, minimumNumberOfCalls 100, and 50 calls a second
    // that all fail, for a minute.
    let clock = Clock::manual();
    let cfg = BreakerConfig::RESILIENCE4J.window(Window::TimeBased(Duration::from_secs(1)));
    let b = Breaker::new(cfg, clock.clone());
    for _ in 0..50 * 60 {
        b.try_acquire().expect("never refused").failure();
        clock.advance(Duration::from_millis(20));
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.stats().rejected, 0);

    // The same traffic against a window long enough to hold 100 calls: it opens.
    let b = Breaker::new(
        BreakerConfig::RESILIENCE4J.window(Window::TimeBased(Duration::from_secs(3))),
        clock.clone(),
    );
    for _ in 0..100 {
        b.try_acquire().unwrap().failure();
        clock.advance(Duration::from_millis(20));
    }
    assert_eq!(b.state(), State::Open, "3 s at 50/s holds 100 calls");
    // A count-based window clamps the minimum to its size, as resilience4j does.
    assert_eq!(
        BreakerConfig::RESILIENCE4J
            .window(Window::CountBased(20))
            .effective_minimum_calls(),
        20
    );
}
