//! Whose fault a failed call is: the node's it named, or the session's. A node's fault (its ACL denies us a
//! read, it went away between a listing and a read, its path or data the client cannot take) is the same on any
//! session, so that node is skipped and the rest of its tree read; a session's fault (a lost connection, an
//! expired session, a server in trouble) is what a new client may cure, and until calls work again nothing is
//! reported. The table is exhaustive, so that a new error of the crate must be placed.

use zookeeper::ZkError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// About the node the call named: skip it, read the rest, keep the session.
    Node,
    /// About the session, its connection or the server: the last known state stands, and the call is made
    /// again (on a new client if it keeps failing).
    Session,
}

impl Fault {
    pub(super) fn of(error: ZkError) -> Fault {
        match error {
            // The node's ACL denies this session what the call needs.
            ZkError::NoAuth
            // Gone, or there, or changed, between two calls: a race with a writer.
            | ZkError::NoNode
            | ZkError::NodeExists
            | ZkError::NotEmpty
            | ZkError::BadVersion
            | ZkError::NoChildrenForEphemerals
            // The client refuses the node's path (say a watcher's `path` without its leading '/'), or cannot
            // decode what the server sent for it.
            | ZkError::BadArguments
            | ZkError::MarshallingError
            | ZkError::InvalidACL
            // No watch of ours on that node to remove.
            | ZkError::NoWatcher => Fault::Node,
            ZkError::ConnectionLoss
            | ZkError::OperationTimeout
            | ZkError::SessionExpired
            | ZkError::SessionMoved
            // The session's credentials were refused: it is closed.
            | ZkError::AuthFailed
            | ZkError::NotReadOnly
            | ZkError::EphemeralOnLocalSession
            | ZkError::InvalidCallback
            // A server too old for the call (persistent watches need 3.6): another member may be newer.
            | ZkError::Unimplemented
            | ZkError::SystemError
            | ZkError::RuntimeInconsistency
            | ZkError::DataInconsistency
            | ZkError::APIError => Fault::Session,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_is_the_nodes_or_the_sessions() {
        #[rustfmt::skip]
        let table = [
            (ZkError::NoAuth, Fault::Node),
            (ZkError::NoNode, Fault::Node),
            (ZkError::NodeExists, Fault::Node),
            (ZkError::NotEmpty, Fault::Node),
            (ZkError::BadVersion, Fault::Node),
            (ZkError::NoChildrenForEphemerals, Fault::Node),
            (ZkError::BadArguments, Fault::Node),
            (ZkError::MarshallingError, Fault::Node),
            (ZkError::InvalidACL, Fault::Node),
            (ZkError::NoWatcher, Fault::Node),
            (ZkError::ConnectionLoss, Fault::Session),
            (ZkError::OperationTimeout, Fault::Session),
            (ZkError::SessionExpired, Fault::Session),
            (ZkError::SessionMoved, Fault::Session),
            (ZkError::AuthFailed, Fault::Session),
            (ZkError::NotReadOnly, Fault::Session),
            (ZkError::EphemeralOnLocalSession, Fault::Session),
            (ZkError::InvalidCallback, Fault::Session),
            (ZkError::Unimplemented, Fault::Session),
            (ZkError::SystemError, Fault::Session),
            (ZkError::RuntimeInconsistency, Fault::Session),
            (ZkError::DataInconsistency, Fault::Session),
            (ZkError::APIError, Fault::Session),
        ];
        for (error, fault) in table {
            assert_eq!(Fault::of(error), fault, "{error:?}");
        }
    }
}
