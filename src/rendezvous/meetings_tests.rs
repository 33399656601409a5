use super::*;

fn info(name: &str) -> PeerInfo {
    PeerInfo { subject: name.to_string(), address: "127.0.0.1:1".to_string() }
}

#[test]
fn either_hello_order_joins_and_a_peer_never_finds_itself() {
    for second_says_hello_first in [false, true] {
        let meetings = Meetings::<&'static str>::new();
        let a = meetings.sit("m/1", info("a")).unwrap();
        let b = meetings.sit("m/1", info("b")).unwrap();
        let (first, second) = if second_says_hello_first { (&b, &a) } else { (&a, &b) };
        let Hello::Wait(mut mailbox) = meetings.hello(first) else { panic!("nobody waits yet") };
        let Hello::Join(partner) = meetings.hello(second) else { panic!("the partner waits") };
        partner.send("arrival").unwrap();
        assert_eq!(mailbox.try_recv().unwrap(), "arrival");
    }
    let meetings = Meetings::<()>::new();
    let alone = meetings.sit("m", info("a")).unwrap();
    assert!(matches!(meetings.hello(&alone), Hello::Wait(_)));
    assert!(matches!(meetings.hello(&alone), Hello::Wait(_)), "a HELLO again does not meet itself");
}

#[test]
fn a_third_peer_is_refused_and_a_leaving_peer_frees_its_place_at_once() {
    let meetings = Meetings::<()>::new();
    let a = meetings.sit("m", info("a")).unwrap();
    let b = meetings.sit("m", info("b")).unwrap();
    assert_eq!(meetings.sit("m", info("c")).err(), Some(Full));
    assert!(meetings.sit("other", info("d")).is_ok(), "other meetings are not affected");
    assert_eq!(meetings.counts(), (1, 0), "seated (the other seat is gone already), but nobody said HELLO");
    a.leave();
    let c = meetings.sit("m", info("c")).unwrap();
    assert_eq!(meetings.view()[0].peers, vec![info("b"), info("c")]);
    drop((b, c));
    assert!(meetings.view().is_empty(), "an empty meeting is forgotten");
}

#[test]
fn a_peer_that_closed_its_mailbox_is_not_joined() {
    let meetings = Meetings::<&'static str>::new();
    let a = meetings.sit("m", info("a")).unwrap();
    let b = meetings.sit("m", info("b")).unwrap();
    let Hello::Wait(mut mailbox) = meetings.hello(&a) else { panic!() };
    mailbox.close();
    let Hello::Wait(_) = meetings.hello(&b) else { panic!("a closing peer must not be joined") };
    drop(a);
    assert_eq!(meetings.view()[0].peers, vec![info("b")]);
}

#[test]
fn a_hand_over_into_a_peer_that_just_left_comes_back() {
    let meetings = Meetings::<&'static str>::new();
    let a = meetings.sit("m", info("a")).unwrap();
    let b = meetings.sit("m", info("b")).unwrap();
    let Hello::Wait(mailbox) = meetings.hello(&a) else { panic!() };
    let Hello::Join(partner) = meetings.hello(&b) else { panic!() };
    drop((mailbox, a));
    assert_eq!(partner.send("me"), Err("me"), "the hand-over fails");
    assert!(matches!(meetings.hello(&b), Hello::Wait(_)), "and the newcomer waits in turn");
}
