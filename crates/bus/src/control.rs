//! Asking the supervisor for its status over the control socket (what
//! `rill status` prints and the parser's `/metrics` exposes).

use std::time::Duration;

use rill_proto::{ControlReply, ControlRequest, StatusReport};

use crate::socket::{self, Role};

/// The supervisor's report from `endpoint`, waiting at most `within`; the
/// error says what went wrong in words.
pub fn status(
    ctx: &zmq::Context,
    endpoint: &str,
    within: Duration,
) -> Result<StatusReport, String> {
    let req = socket::open(ctx, zmq::REQ, Role::Control).map_err(|e| e.to_string())?;
    req.set_linger(0).map_err(|e| e.to_string())?;
    socket::connect(&req, endpoint).map_err(|e| e.to_string())?;
    let ask = serde_json::to_vec(&ControlRequest::Status).map_err(|e| e.to_string())?;
    req.send(ask, 0).map_err(|e| e.to_string())?;
    if !socket::readable(&req, within).map_err(|e| e.to_string())? {
        return Err(format!(
            "the supervisor did not answer on {endpoint} within {}s",
            within.as_secs()
        ));
    }
    let answer = req.recv_bytes(0).map_err(|e| e.to_string())?;
    match serde_json::from_slice::<ControlReply>(&answer).map_err(|e| e.to_string())? {
        ControlReply::Ok { report: Some(r) } => Ok(*r),
        ControlReply::Ok { report: None } => Err("the supervisor sent no report".into()),
        ControlReply::Failed { failure_reason } => {
            Err(format!("the supervisor refused: {failure_reason}"))
        }
    }
}
