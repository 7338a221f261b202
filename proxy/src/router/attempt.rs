//! The attempt loop: pick an endpoint, send, judge the answer, and retry what is safe and allowed.
//!
//! A failed attempt is retried when it is safe (it never reached the upstream — connect failures and unsent
//! requests, for every method) or when the service's response classifier allows it for this method (or the
//! upstream proxy said `l5d-retryable: true`), the body could be kept, the deadline allows, and the retry budget
//! has room. A retryable failure that is not retried is returned with `l5d-retryable: true`, so a proxy further
//! out can retry it. Each retry may pick another endpoint (and another union branch); the endpoint the last
//! attempt failed on is avoided while another is usable.
//!
//! With `hedging` on, an idempotent request with a kept body that has had no answer for as long as the service's
//! recent percentile ([`super::hedge`]) gets a second attempt at another endpoint, paid from the retry budget; the
//! first answer wins. A first attempt beaten by its hedge finishes in the background and is charged its real
//! latency, so the balancer learns the endpoint is slow and sends it less; a beaten hedge is cancelled.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Response};
use http_body_util::Either;
use hyper::body::Incoming;
use switchyard_dtab::{NameTree, Path};
use tokio::time::Instant;

use super::balance::{Balancer, Unavailable};
use super::bind::{choose, Binding, Choice, Target};
use super::body::{KeptRequest, ProxyBody, ReqBody};
use super::context::{self, Deadline};
use super::endpoint::{Endpoint, SendError};
use super::error::{Failure, ProxyError, TimeoutKind};
use super::headers::{self, L5D_ERR, L5D_RETRYABLE};

/// Attempts per request at most, whatever the budget says (a guard against pathological configs).
pub const MAX_ATTEMPTS: u32 = 25;

/// One request's attempts: what every attempt shares, and what the last one left behind.
pub struct Attempts<'a> {
    binding: &'a Binding,
    tree: &'a NameTree<Arc<Target>>,
    path: &'a Path,
    request: KeptRequest,
    deadline: Deadline,
    start: Instant,
    h2: bool,
    /// Retries sent so far.
    retries: u32,
    /// The failure that prompted the current retry: reported instead of "no endpoint left" when a retry finds
    /// every endpoint ejected, because it says what actually went wrong.
    last_error: Option<ProxyError>,
    /// The endpoint the last attempt failed on, avoided by the next pick while another is usable.
    last_endpoint: Option<Arc<Endpoint>>,
}

/// An attempt on its way: when it left, and where to.
struct Sent {
    at: Instant,
    target: Arc<Target>,
    endpoint: Arc<Endpoint>,
}

type SendResult = Result<Response<Incoming>, SendError>;

/// The endpoint step, bounded by the attempt timeout and what is left of the deadline. Owns what it needs, so a
/// hedge can run beside it.
fn send(
    deadline: Deadline,
    sent: &Sent,
    req: http::Request<ReqBody>,
) -> impl Future<Output = SendResult> + Send + 'static {
    let endpoint = sent.endpoint.clone();
    let per_attempt = sent.target.balancer.policy.request_attempt_timeout;
    async move {
        let limit = [per_attempt, deadline.remaining()].into_iter().flatten().min();
        let Some(t) = limit else { return endpoint.send(req).await };
        tokio::time::timeout(t, endpoint.send(req)).await.unwrap_or_else(|_| {
            // Report the configured timeout that ran out, not the remainder this attempt happened to get.
            let error = if Some(t) == per_attempt {
                ProxyError::Timeout { kind: TimeoutKind::Attempt, after: t }
            } else {
                deadline.timed_out(TimeoutKind::Request)
            };
            Err(SendError { error, unsent: None, sent: true })
        })
    }
}

/// What one attempt came back with, as judged.
enum Outcome {
    /// The upstream answered; `failure` and `retryable` are the classifier's verdict.
    Answered { resp: Response<Incoming>, failure: bool, retryable: bool },
    /// No answer. `retryable`: safe to send again; `pointless`: but not now, since no other endpoint is live.
    Failed { error: ProxyError, retryable: bool, pointless: bool },
}

impl<'a> Attempts<'a> {
    /// The attempts of a request bound to `tree` (under `binding`), started at `start`.
    pub fn new(
        binding: &'a Binding,
        tree: &'a NameTree<Arc<Target>>,
        path: &'a Path,
        request: KeptRequest,
        deadline: Deadline,
        start: Instant,
        h2: bool,
    ) -> Self {
        let (retries, last_error, last_endpoint) = (0, None, None);
        Self { binding, tree, path, request, deadline, start, h2, retries, last_error, last_endpoint }
    }

    /// Sends attempts until one answers acceptably or no retry is allowed. `sent_to` is left naming the balancer
    /// of the last attempt (for the access log).
    pub async fn run(mut self, sent_to: &mut Option<Arc<Balancer>>) -> Result<Response<ProxyBody>, Failure> {
        loop {
            let (target, endpoint) = self.pick()?;
            *sent_to = Some(target.balancer.clone());
            let req = self.build(&target, &endpoint)?;
            let sent = Sent { at: Instant::now(), target, endpoint };
            let attempt = send(self.deadline, &sent, req);
            let (sent, result) = match self.hedge_delay() {
                Some(delay) => Box::pin(self.race(sent, Box::pin(attempt), delay)).await,
                None => (sent, attempt.await),
            };
            let (endpoint, balancer) = (&sent.endpoint, &sent.target.balancer);
            if !sent_to.as_ref().is_some_and(|b| Arc::ptr_eq(b, balancer)) {
                // A hedge to another branch answered.
                *sent_to = Some(balancer.clone());
            }
            let outcome = match result {
                Ok(resp) => self.judge_answer(resp, endpoint, balancer, sent.at),
                Err(e) => self.judge_error(e, endpoint, balancer, sent.at),
            };
            let wanted = match &outcome {
                Outcome::Answered { retryable, .. } => *retryable,
                Outcome::Failed { retryable, pointless, .. } => *retryable && !*pointless,
            };
            if wanted && self.may_retry().await {
                self.retries += 1;
                self.last_endpoint = Some(sent.endpoint.clone());
                if let Outcome::Failed { error, .. } = outcome {
                    self.last_error = Some(error);
                }
                continue;
            }
            return match outcome {
                Outcome::Answered { resp, failure, retryable } => Ok(self.respond(resp, failure, retryable)),
                // The balancer's metrics counted it when it was judged.
                Outcome::Failed { error, retryable, .. } => Err(Failure { error, retryable, client: None }),
            };
        }
    }

    /// The balance step: a branch of the bound tree, then an endpoint of its balancer.
    fn pick(&mut self) -> Result<(Arc<Target>, Arc<Endpoint>), Failure> {
        let target = match choose(self.tree) {
            Choice::Target(t) => t.clone(),
            Choice::Neg => return Err(ProxyError::Unbound { path: self.path.clone() }.into()),
            Choice::Fail => return Err(ProxyError::BindFailed { path: self.path.clone() }.into()),
            Choice::Empty => return Err(Failure::retryable(ProxyError::NoEndpoints { client: self.path.clone() })),
        };
        let balancer = &target.balancer;
        balancer.metrics.request();
        let why = match balancer.pick(self.last_endpoint.as_ref()) {
            Ok(endpoint) => return Ok((target, endpoint)),
            Err(why) => why,
        };
        let id = balancer.id.clone();
        let error = match why {
            Unavailable::AllDead => self.last_error.take().unwrap_or(ProxyError::AllEndpointsDead { client: id }),
            Unavailable::Empty => ProxyError::NoEndpoints { client: id },
        };
        Err(Failure { error, retryable: true, client: Some(balancer.clone()) })
    }

    /// The request for one attempt. A copy of the headers is kept only when the classifier could retry after the
    /// upstream saw the request.
    fn build(&mut self, target: &Target, endpoint: &Endpoint) -> Result<http::Request<ReqBody>, Failure> {
        let keep = self.binding.policy.classifier.retryable_method(&self.request.method);
        let Some(mut req) = self.request.attempt(keep) else {
            let error = ProxyError::Upstream { addr: endpoint.addr, error: "request body already consumed".into() };
            return Err(Failure { error, retryable: false, client: Some(target.balancer.clone()) });
        };
        context::prepare_attempt(&mut req, target, &self.deadline, self.h2);
        Ok(req)
    }

    /// How long the first attempt may go unanswered before it is hedged: the service's `hedging` percentile of
    /// recent answers (at least its `minMs`), for requests that may be sent twice — idempotent for the classifier,
    /// body kept. `None`: no hedging.
    fn hedge_delay(&self) -> Option<Duration> {
        let hedging = self.binding.policy.hedging?;
        let may = self.retries == 0
            && self.request.replayable()
            && self.binding.policy.classifier.retryable_method(&self.request.method);
        let p = if may { self.binding.latency.percentile(hedging.percentile)? } else { return None };
        Some(p.max(Duration::from_millis(hedging.min_ms)))
    }

    /// Runs the first attempt; if it has not answered within `delay`, sends a hedge to another endpoint (budget
    /// permitting) and takes whichever answers first — or, if one fails outright, the other. When the hedge wins,
    /// the first attempt is left to finish in the background (bounded by its timeouts) so that its endpoint's
    /// latency estimate learns how slow it really was; its answer is dropped.
    async fn race<F>(&mut self, first: Sent, mut attempt: Pin<Box<F>>, delay: Duration) -> (Sent, SendResult)
    where
        F: Future<Output = SendResult> + Send + 'static,
    {
        tokio::select! {
            r = &mut attempt => return (first, r),
            _ = tokio::time::sleep(delay) => {}
        }
        let Some((second, req)) = self.hedge(&first.endpoint) else { return (first, attempt.await) };
        self.binding.hedges.inc();
        let hedge = send(self.deadline, &second, req);
        tokio::pin!(hedge);
        tokio::select! {
            r = &mut attempt => match r {
                Ok(resp) => (first, Ok(resp)),
                Err(e) => {
                    // The first failed outright: book it, and wait for the hedge.
                    self.judge_error(e, &first.endpoint, &first.target.balancer, first.at);
                    self.binding.hedge_wins.inc();
                    (second, hedge.await)
                }
            },
            r = &mut hedge => match r {
                Ok(resp) => {
                    self.binding.hedge_wins.inc();
                    let (endpoint, decay, at) = (first.endpoint.clone(), first.target.balancer.ewma_decay(), first.at);
                    tokio::spawn(async move {
                        if attempt.await.is_ok() {
                            endpoint.health.observe_latency(at.elapsed(), decay);
                        }
                    });
                    (second, Ok(resp))
                }
                Err(e) => {
                    self.judge_error(e, &second.endpoint, &second.target.balancer, second.at);
                    (first, attempt.await)
                }
            },
        }
    }

    /// A hedge for a request whose first attempt went to `avoid`: another endpoint (of any branch), if there is
    /// one and the retry budget has room.
    fn hedge(&mut self, avoid: &Arc<Endpoint>) -> Option<(Sent, http::Request<ReqBody>)> {
        let Choice::Target(target) = choose(self.tree) else { return None };
        let endpoint = target.balancer.pick(Some(avoid)).ok().filter(|e| !Arc::ptr_eq(e, avoid))?;
        if !self.binding.budget.try_withdraw() {
            self.binding.budget_exhausted.inc();
            return None;
        }
        let target = target.clone();
        target.balancer.metrics.request();
        // Hedged requests are the classifier's retryable methods, so `build` keeps a copy of the headers.
        let req = self.build(&target, &endpoint).ok()?;
        Some((Sent { at: Instant::now(), target, endpoint }, req))
    }

    /// Judges an upstream answer: records it in the endpoint's health and the balancer's metrics.
    fn judge_answer(
        &self,
        resp: Response<Incoming>,
        endpoint: &Arc<Endpoint>,
        balancer: &Balancer,
        sent_at: Instant,
    ) -> Outcome {
        let classifier = self.binding.policy.classifier;
        let status = resp.status();
        let elapsed = sent_at.elapsed();
        let failure = classifier.is_failure(status);
        let accrual = &balancer.policy.failure_accrual;
        endpoint.health.record(!failure, accrual, failure && balancer.others_live(endpoint), sent_at);
        if failure {
            endpoint.health.observe_failure(balancer.ewma_decay());
        } else {
            endpoint.health.observe_latency(elapsed, balancer.ewma_decay());
            self.binding.latency.record(elapsed);
        }
        balancer.metrics.response_classified(status, failure, elapsed);
        // Honoured only from a proxy's own error (it carries l5d-err): an app's header must never make a request it
        // already handled look safe to replay.
        let upstream_says =
            resp.headers().contains_key(L5D_ERR) && resp.headers().get(L5D_RETRYABLE).is_some_and(|v| v == "true");
        let retryable = failure && (classifier.retryable_method(&self.request.method) || upstream_says);
        Outcome::Answered { resp, failure, retryable }
    }

    /// Judges a failed send: records it against the endpoint (unless a deadline that was not the attempt's ran
    /// out) and in the balancer's metrics. Retryable always when the request never left, after sending only as
    /// the classifier allows for the method. An unsent request is taken back for the next attempt.
    fn judge_error(
        &mut self,
        e: SendError,
        endpoint: &Arc<Endpoint>,
        balancer: &Balancer,
        sent_at: Instant,
    ) -> Outcome {
        if let Some(fault) = self.request.client_fault() {
            // The client's body broke or stalled while it streamed upstream: the client's failure (400/408),
            // not the endpoint's — no failure accrual, no latency penalty, nothing to retry.
            let error = ProxyError::ClientBody(fault.clone());
            balancer.metrics.response(error.status(), sent_at.elapsed());
            return Outcome::Failed { error, retryable: false, pointless: true };
        }
        if e.error.blames_endpoint() {
            endpoint.health.record(false, &balancer.policy.failure_accrual, balancer.others_live(endpoint), sent_at);
            endpoint.health.observe_failure(balancer.ewma_decay());
        }
        balancer.metrics.response(e.error.status(), sent_at.elapsed());
        let after_send = matches!(e.error, ProxyError::Upstream { .. } | ProxyError::Timeout { .. })
            && self.binding.policy.classifier.retryable_method(&self.request.method);
        let retryable = !e.sent || after_send;
        if let Some(unsent) = e.unsent {
            self.request.restore(*unsent);
        }
        // A refused connection or a full queue with no other live endpoint to try: retrying the same one at once
        // is pointless, so fail fast with the real cause (marked retryable for a proxy further out).
        let pointless = matches!(
            e.error,
            ProxyError::Connect { .. } | ProxyError::QueuedConnectFailed { .. } | ProxyError::PoolFull { .. }
        ) && !balancer.others_live(endpoint);
        Outcome::Failed { error: e.error, retryable, pointless }
    }

    /// Whether another attempt may go out — body, attempts, deadline and budget permitting — after the backoff.
    async fn may_retry(&self) -> bool {
        if self.retries + 1 >= MAX_ATTEMPTS || !self.request.can_attempt() {
            return false;
        }
        let backoff = self.binding.policy.retries.backoff.delay(self.retries);
        if self.deadline.remaining().is_some_and(|left| left <= backoff) {
            return false;
        }
        if !self.binding.budget.try_withdraw() {
            self.binding.budget_exhausted.inc();
            return false;
        }
        self.binding.retries.inc();
        if !backoff.is_zero() {
            tokio::time::sleep(backoff).await;
        }
        true
    }

    /// Hands an upstream response to the client: hop-by-hop hygiene, `Via`, `l5d-retryable` for a retryable
    /// failure that was not retried, and the route's metrics.
    fn respond(&self, mut resp: Response<Incoming>, failure: bool, retryable: bool) -> Response<ProxyBody> {
        let version = resp.version();
        headers::strip_hop_by_hop(resp.headers_mut(), false);
        headers::append_via(resp.headers_mut(), version);
        if retryable {
            resp.headers_mut().insert(L5D_RETRYABLE, HeaderValue::from_static("true"));
        }
        self.binding.route.response_classified(resp.status(), failure, self.start.elapsed());
        resp.map(Either::Left)
    }
}
