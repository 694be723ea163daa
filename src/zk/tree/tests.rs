//! The tree bookkeeping's tests: a fake ZooKeeper answers the calls one at a time, and each test says which
//! calls a happening costs and what the owners hear.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::*;

/// Something that happens to the trees: a watch event, a reconnect.
type Happening<'a> = &'a dyn Fn(&mut Trees);
/// Nodes as (path, data).
type Nodes<'a> = &'a [(&'a str, &'a str)];
/// Calls as `show` writes them, or tellings as `owner` writes them.
type Lines<'a> = &'a [&'a str];

/// What an owner was told, a line per telling: "-" for a missing root, else its children as `name=data`.
type Told = Arc<Mutex<Vec<String>>>;

fn owner(told: &Told) -> Box<dyn Owner> {
    let told = told.clone();
    Box::new(move |tree: &Tree| {
        let line = match tree.root_exists() {
            false => "-".to_string(),
            true => tree
                .children()
                .iter()
                .map(|(name, data)| format!("{name}={}", String::from_utf8_lossy(data)))
                .collect::<Vec<_>>()
                .join(" "),
        };
        told.lock().unwrap().push(line);
    })
}

/// Takes what the owner was told since the last look.
fn heard(told: &Told) -> Vec<String> {
    std::mem::take(&mut *told.lock().unwrap())
}

fn show(call: &Call) -> String {
    match call {
        Call::Watch { root, unregister: true } => format!("rewatch {root}"),
        call => call.to_string(),
    }
}

/// A ZooKeeper holding `nodes` (path, data) answers `call`; a call named in `failing` fails.
fn answer(nodes: Nodes, failing: Lines, call: Call) -> Answer {
    if failing.contains(&call.to_string().as_str()) {
        return Answer::Failed { call, error: ZkError::ConnectionLoss };
    }
    let exists = |path: &str| nodes.iter().any(|(node, _)| *node == path);
    match call {
        Call::Watch { root, .. } => Answer::Watched { root },
        Call::List { root } => {
            let names = exists(&root).then(|| {
                nodes
                    .iter()
                    .filter_map(|(node, _)| node.strip_prefix(&path_of(&root, "")))
                    .filter(|name| !name.is_empty() && !name.contains('/'))
                    .map(str::to_string)
                    .collect()
            });
            Answer::Listed { root, names }
        }
        Call::Read { root, name } => {
            let path = path_of(&root, &name);
            let data = nodes.iter().find(|(node, _)| *node == path).map(|(_, data)| data.as_bytes().to_vec());
            Answer::Read { root, name, data }
        }
        Call::Unwatch { .. } => Answer::Unwatched,
    }
}

/// One round of the follower's work against `nodes`, the calls made one at a time: the calls, in order.
fn round(trees: &mut Trees, nodes: Nodes, failing: Lines) -> Vec<String> {
    round_with(trees, |call| answer(nodes, failing, call))
}

/// A round against `nodes` whose nodes in `denied` have an ACL that denies us every call: NoAuth.
fn round_denied(trees: &mut Trees, nodes: Nodes, denied: Lines) -> Vec<String> {
    round_with(trees, |call| match call {
        Call::Read { ref root, ref name } if denied.contains(&path_of(root, name).as_str()) => {
            Answer::Failed { call, error: ZkError::NoAuth }
        }
        Call::Watch { ref root, .. } | Call::List { ref root } if denied.contains(&root.as_str()) => {
            Answer::Failed { call, error: ZkError::NoAuth }
        }
        call => answer(nodes, &[], call),
    })
}

fn round_with(trees: &mut Trees, answer: impl Fn(Call) -> Answer) -> Vec<String> {
    let mut queue: VecDeque<Call> = trees.start().into();
    let mut made = Vec::new();
    while let Some(call) = queue.pop_front() {
        made.push(show(&call));
        queue.extend(trees.settle(answer(call)));
    }
    made
}

/// The notes for the log since the last look, as the log writes them.
fn noted(trees: &mut Trees) -> Vec<String> {
    trees.take_notes().iter().map(ToString::to_string).collect()
}

const NODES: Nodes = &[("/s", ""), ("/s/a", "1"), ("/s/b", "2"), ("/t", ""), ("/t/x", "9")];

/// Trees on /s and /t, read from NODES, their owners' first telling taken.
fn two_trees() -> (Trees, Told, Told) {
    let (s, t) = (Told::default(), Told::default());
    let mut trees = Trees::default();
    trees.follow(1, "/s".into(), owner(&s));
    trees.follow(2, "/t".into(), owner(&t));
    round(&mut trees, NODES, &[]);
    assert_eq!((heard(&s), heard(&t)), (vec!["a=1 b=2".into()], vec!["x=9".into()]));
    (trees, s, t)
}

#[test]
fn a_new_tree_is_watched_listed_and_read_and_its_owner_told_once() {
    let told = Told::default();
    let mut trees = Trees::default();
    trees.follow(1, "/s".into(), owner(&told));
    assert_eq!(heard(&told), Vec::<String>::new(), "not before it is read");
    assert_eq!(round(&mut trees, NODES, &[]), ["watch /s", "list /s", "read /s/a", "read /s/b"]);
    assert_eq!(heard(&told), ["a=1 b=2"]);
    assert_eq!(round(&mut trees, NODES, &[]), Vec::<String>::new(), "nothing more to do");
    assert_eq!(heard(&told), Vec::<String>::new());
}

#[test]
fn an_event_costs_the_calls_it_names_and_tells_that_tree_only() {
    let after: Nodes = &[("/s", ""), ("/s/a", "1+"), ("/s/b", "2"), ("/s/c", "3"), ("/t", ""), ("/t/x", "9")];
    #[rustfmt::skip]
    let cases: &[(&str, Happening, Nodes, Lines, Lines, Lines)] = &[
        // (what, event, nodes after it, calls made, /s's owner told, /t's owner told)
        ("a child changed", &|t| t.changed("/s/a", false), after, &["read /s/a"], &["a=1+ b=2"], &[]),
        ("a child created", &|t| t.changed("/s/c", false), after, &["read /s/c"], &["a=1 b=2 c=3"], &[]),
        ("a child deleted", &|t| t.changed("/s/a", true), &NODES[2..], &[], &["b=2"], &[]),
        ("a burst, one read each", &|t| {
            t.changed("/s/a", false);
            t.changed("/s/c", false);
            t.changed("/s/a", false);
        }, after, &["read /s/a", "read /s/c"], &["a=1+ b=2 c=3"], &[]),
        ("created, then deleted before the read", &|t| {
            t.changed("/s/c", false);
            t.changed("/s/c", true);
        }, NODES, &[], &["a=1 b=2"], &[]),
        ("deleted before its read", &|t| t.changed("/s/b", false), &NODES[..2], &["read /s/b"], &["a=1"], &[]),
        ("the root changed", &|t| t.changed("/s", false), after,
            &["list /s", "read /s/a", "read /s/b", "read /s/c"], &["a=1+ b=2 c=3"], &[]),
        ("the root deleted", &|t| t.changed("/s", true), &NODES[3..], &["list /s"], &["-"], &[]),
        ("a grandchild", &|t| t.changed("/s/a/deep", false), NODES, &[], &[], &[]),
        ("a node of no tree", &|t| t.changed("/u/a", false), NODES, &[], &[], &[]),
        ("a reconnect", &|t| t.reconnected(), NODES,
            &["rewatch /s", "rewatch /t", "list /s", "list /t", "read /s/a", "read /s/b", "read /t/x"],
            &["a=1 b=2"], &["x=9"]),
        ("a new client", &|t| t.renewed(), NODES,
            &["watch /s", "watch /t", "list /s", "list /t", "read /s/a", "read /s/b", "read /t/x"],
            &["a=1 b=2"], &["x=9"]),
    ];
    for (what, event, nodes, calls, told_s, told_t) in cases {
        let (mut trees, s, t) = two_trees();
        event(&mut trees);
        assert_eq!(round(&mut trees, nodes, &[]), *calls, "{what}: calls");
        assert_eq!(heard(&s), *told_s, "{what}: /s's owner told");
        assert_eq!(heard(&t), *told_t, "{what}: /t's owner told");
        assert_eq!(round(&mut trees, nodes, &[]), Vec::<String>::new(), "{what}: nothing more to do");
    }
}

#[test]
fn a_failed_call_tells_nobody_and_is_made_again() {
    #[rustfmt::skip]
    let cases: &[(&str, Happening, &str, Lines)] = &[
        // (what, event, the call that fails once, the calls of the next round)
        ("the watch", &|t| t.renewed(), "watch /s", &["rewatch /s", "list /s", "read /s/a", "read /s/b"]),
        ("the listing", &|t| t.reconnected(), "list /s", &["list /s", "read /s/a", "read /s/b"]),
        ("a changed child's read", &|t| t.changed("/s/b", false), "read /s/b", &["read /s/b"]),
        ("a read after a reconnect", &|t| t.reconnected(), "read /s/b", &["read /s/b"]),
    ];
    for (what, event, failing, again) in cases {
        let (mut trees, s, t) = two_trees();
        event(&mut trees);
        round(&mut trees, NODES, &[failing]);
        assert_eq!(heard(&s), Vec::<String>::new(), "{what}: /s's owner keeps what it has");
        heard(&t);
        assert_eq!(round(&mut trees, NODES, &[]), *again, "{what}: the next round");
        assert_eq!(heard(&s), ["a=1 b=2"], "{what}: told once it worked");
    }
}

#[test]
fn a_missing_root_is_told_as_such_and_read_once_created() {
    let told = Told::default();
    let mut trees = Trees::default();
    trees.follow(1, "/none".into(), owner(&told));
    assert_eq!(round(&mut trees, NODES, &[]), ["watch /none", "list /none"]);
    assert_eq!(heard(&told), ["-"]);
    trees.changed("/none", false);
    let created = &[("/none", ""), ("/none/a", "1")];
    assert_eq!(round(&mut trees, created, &[]), ["list /none", "read /none/a"]);
    assert_eq!(heard(&told), ["a=1"]);
}

#[test]
fn the_root_of_the_namespace_is_a_tree_too() {
    let told = Told::default();
    let mut trees = Trees::default();
    trees.follow(1, "/".into(), owner(&told));
    let nodes = &[("/", ""), ("/a", "1")];
    assert_eq!(round(&mut trees, nodes, &[]), ["watch /", "list /", "read /a"]);
    trees.changed("/a", true);
    assert_eq!(round(&mut trees, nodes, &[]), Vec::<String>::new());
    assert_eq!(heard(&told), ["a=1", ""]);
}

#[test]
fn owners_share_a_tree_and_its_watch_goes_with_the_last() {
    let (mut trees, s, _) = two_trees();
    // A second owner of a tree already read is told at once, and costs no call.
    let second = Told::default();
    trees.follow(3, "/s".into(), owner(&second));
    assert_eq!(heard(&second), ["a=1 b=2"]);
    assert_eq!(round(&mut trees, NODES, &[]), Vec::<String>::new());
    // Both hear of a change.
    trees.changed("/s/a", true);
    round(&mut trees, NODES, &[]);
    assert_eq!((heard(&s), heard(&second)), (vec!["b=2".into()], vec!["b=2".into()]));
    assert_eq!(trees.unfollow(1), None, "another owner still follows /s");
    assert_eq!(trees.unfollow(3), Some("/s".into()), "the last owner: the watch is removed");
    assert_eq!(trees.unfollow(3), None, "once");
    // A tree whose watch was never asked for has none to remove.
    trees.follow(4, "/u".into(), owner(&Told::default()));
    assert_eq!(trees.unfollow(4), None);
    // Events for a tree no longer followed are ignored.
    trees.changed("/s/a", false);
    assert_eq!(round(&mut trees, NODES, &[]), Vec::<String>::new());
}

#[test]
fn an_owner_that_comes_while_the_tree_is_unread_hears_with_the_others() {
    let (first, second) = (Told::default(), Told::default());
    let mut trees = Trees::default();
    trees.follow(1, "/s".into(), owner(&first));
    trees.follow(2, "/s".into(), owner(&second));
    assert_eq!(round(&mut trees, NODES, &[]), ["watch /s", "list /s", "read /s/a", "read /s/b"]);
    assert_eq!((heard(&first), heard(&second)), (vec!["a=1 b=2".into()], vec!["a=1 b=2".into()]));
}

#[test]
fn a_node_that_is_a_root_and_a_child_is_news_for_both_trees() {
    // A service's servers as the children of its own node, under the registry's path.
    let nodes: Nodes = &[("/s", ""), ("/s/a", "blob"), ("/s/a/x", "1")];
    let (services, servers) = (Told::default(), Told::default());
    let mut trees = Trees::default();
    trees.follow(1, "/s".into(), owner(&services));
    trees.follow(2, "/s/a".into(), owner(&servers));
    round(&mut trees, nodes, &[]);
    assert_eq!((heard(&services), heard(&servers)), (vec!["a=blob".into()], vec!["x=1".into()]));
    let edited: Nodes = &[("/s", ""), ("/s/a", "blob+"), ("/s/a/x", "1")];
    trees.changed("/s/a", false);
    assert_eq!(round(&mut trees, edited, &[]), ["read /s/a", "list /s/a", "read /s/a/x"]);
    assert_eq!((heard(&services), heard(&servers)), (vec!["a=blob+".into()], vec!["x=1".into()]));
}

#[test]
fn an_unwatch_answer_settles_no_tree() {
    let mut trees = Trees::default();
    trees.follow(1, "/s".into(), Box::new(|_: &Tree| panic!("told before the tree was read")));
    let _ = trees.start();
    assert!(trees.settle(Answer::Unwatched).is_empty());
}

#[test]
fn a_child_that_cannot_be_read_is_skipped_and_noted_once_while_the_rest_is_told() {
    let nodes: Nodes = &[("/s", ""), ("/s/a", "1"), ("/s/b", "2"), ("/s/c", "3")];
    let denied: Lines = &["/s/b"];
    let told = Told::default();
    let mut trees = Trees::default();
    trees.follow(1, "/s".into(), owner(&told));
    assert_eq!(
        round_denied(&mut trees, nodes, denied),
        ["watch /s", "list /s", "read /s/a", "read /s/b", "read /s/c"]
    );
    assert_eq!(heard(&told), ["a=1 c=3"], "the rest is told");
    assert_eq!(noted(&mut trees), ["read /s/b: NoAuth; skipping that node until it can be read"]);
    assert!(trees.unreadable(), "the follower will recheck it");
    assert_eq!(round_denied(&mut trees, nodes, denied), Vec::<String>::new(), "not read again for nothing");

    // Read again when it changes, without a second note; the other children come and go as ever.
    trees.changed("/s/b", false);
    trees.changed("/s/d", false);
    let more: Nodes = &[("/s", ""), ("/s/a", "1"), ("/s/b", "2"), ("/s/c", "3"), ("/s/d", "4")];
    assert_eq!(round_denied(&mut trees, more, denied), ["read /s/b", "read /s/d"]);
    assert_eq!(heard(&told), ["a=1 c=3 d=4"]);
    assert_eq!(noted(&mut trees), Vec::<String>::new(), "noted once");
    trees.reconnected();
    round_denied(&mut trees, more, denied);
    assert_eq!(
        (heard(&told), noted(&mut trees)),
        (vec!["a=1 c=3 d=4".into()], vec![]),
        "once across reconnects"
    );

    // A recheck finds it readable: told, and noted as such.
    trees.recheck();
    assert_eq!(round_denied(&mut trees, more, &[]), ["read /s/b"]);
    assert_eq!(heard(&told), ["a=1 b=2 c=3 d=4"]);
    assert_eq!(noted(&mut trees), ["/s/b can be read again"]);
    assert!(!trees.unreadable());

    // Denied once more (its ACL changed back): noted again, and kept as last read meanwhile.
    trees.changed("/s/b", false);
    assert_eq!(round_denied(&mut trees, more, denied), ["read /s/b"]);
    assert_eq!(heard(&told), ["a=1 b=2 c=3 d=4"]);
    assert_eq!(noted(&mut trees), ["read /s/b: NoAuth; skipping that node until it can be read"]);
    // Deleted: gone, with nothing to note and nothing left to recheck.
    trees.changed("/s/b", true);
    round_denied(&mut trees, more, denied);
    assert_eq!((heard(&told), noted(&mut trees)), (vec!["a=1 c=3 d=4".into()], vec![]));
    assert!(!trees.unreadable());
}

#[test]
fn a_root_that_cannot_be_listed_keeps_its_tree_until_a_recheck_lists_it() {
    let (mut trees, s, t) = two_trees();
    trees.changed("/s", false);
    assert_eq!(round_denied(&mut trees, NODES, &["/s"]), ["list /s"]);
    assert_eq!((heard(&s), heard(&t)), (vec![], vec![]), "the last known children stand");
    assert_eq!(noted(&mut trees), ["list /s: NoAuth; keeping what was read under it until it can be read"]);
    assert_eq!(round_denied(&mut trees, NODES, &["/s"]), Vec::<String>::new(), "held until a recheck");
    // The other tree goes on as ever.
    trees.changed("/t/x", false);
    assert_eq!(round_denied(&mut trees, NODES, &["/s"]), ["read /t/x"]);
    assert_eq!(heard(&t), ["x=9"]);
    trees.recheck();
    assert_eq!(round_denied(&mut trees, NODES, &["/s"]), ["list /s"]);
    assert_eq!(noted(&mut trees), Vec::<String>::new(), "noted once");
    trees.recheck();
    assert_eq!(round_denied(&mut trees, NODES, &[]), ["list /s", "read /s/a", "read /s/b"]);
    assert_eq!(heard(&s), ["a=1 b=2"]);
    assert_eq!(noted(&mut trees), ["/s can be read again"]);
    assert!(!trees.unreadable());
}

#[test]
fn a_root_that_cannot_be_watched_is_held_and_tells_nobody() {
    let told = Told::default();
    let mut trees = Trees::default();
    trees.follow(1, "/s".into(), owner(&told));
    assert_eq!(round_denied(&mut trees, NODES, &["/s"]), ["watch /s"]);
    assert_eq!(heard(&told), Vec::<String>::new());
    assert_eq!(noted(&mut trees), ["watch /s: NoAuth; keeping what was read under it until it can be read"]);
    assert_eq!(round_denied(&mut trees, NODES, &["/s"]), Vec::<String>::new(), "held");
    // A new client tries again at once.
    trees.renewed();
    assert_eq!(round_denied(&mut trees, NODES, &[]), ["watch /s", "list /s", "read /s/a", "read /s/b"]);
    assert_eq!(heard(&told), ["a=1 b=2"]);
    assert_eq!(noted(&mut trees), ["/s can be read again"]);
}
