//! The accounts' `did:web` documents: root key, issuing keys, devices, and the messaging
//! endpoints (the node's, then a standby's).

use super::*;

impl Accounts {
    /// The DID document of `name`: root key, issuing keys, and every active device; with
    /// its `did:webvh` DID in `alsoKnownAs` once the account has one.
    pub async fn did_document(&self, name: &str) -> Result<DidDocument, AccountError> {
        let name = UserName::parse(name).map_err(|_| AccountError::NotFound("no such account".into()))?;
        let mut conn = self.conn().await?;
        let user = store::user_by_name(&mut conn, name.as_str())
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("no account named {name}")))?;
        // A moved account's old did:web document stays, naming its DIDs on the new node,
        // for as long as this node answers for it.
        if !self.still_answering_for(&mut conn, &user).await? {
            self.check_active(&mut conn, &user).await?;
        }
        let mut doc = self.document_of(&mut conn, &user).await?;
        if let Some(webvh) = Self::webvh_did(&mut conn, &user.id).await? {
            doc.also_known_as.push(webvh);
        }
        doc.also_known_as.extend(Self::earlier_dids(&mut conn, &user.id).await?);
        Ok(doc)
    }

    /// The `did:web` document of an account, from its rows (in `conn`, which may be the
    /// transaction of a change). A moved account's names the new node's messaging endpoint.
    pub(super) async fn document_of(
        &self,
        conn: &mut store::Conn,
        user: &store::UserRow,
    ) -> Result<DidDocument, AccountError> {
        let issuing = store::issuing_keys(conn, &user.id).await?;
        let devices: Vec<(String, String, String)> =
            store::active_devices(conn, &user.id).await?.into_iter().map(|d| (d.id, d.sign_key, d.agree_key)).collect();
        let didcomm = match user.status.as_str() {
            "moved" => match store::finished_move(conn, &user.id, "out").await?.and_then(|m| m.peer_origin) {
                Some(origin) => format!("{}{DIDCOMM_PATH}", origin.trim_end_matches('/')),
                None => self.node.url(DIDCOMM_PATH),
            },
            _ => self.node.url(DIDCOMM_PATH),
        };
        let mut doc = build_document(self.node.user_did(&user.name)?, &user.root_key, &issuing, &devices, didcomm);
        // The standby's endpoint comes second: senders try it when this node is down.
        if let (Some((_, endpoint)), "active") = (&user.standby, user.status.as_str()) {
            doc.service.push(Service {
                id: doc.id.url("didcomm-standby"),
                kind: "DIDCommMessaging".into(),
                service_endpoint: serde_json::json!({"uri": endpoint, "accept": ["didcomm/v2"]}),
            });
        }
        Ok(doc)
    }
}

/// A user's `did:web` document: the root key (`capabilityInvocation`), the issuing keys
/// (`assertionMethod`), each device's keys (`authentication`, `keyAgreement`), and the
/// messaging service at `didcomm`.
pub(super) fn build_document(
    did: Did,
    root_key: &str,
    issuing: &[(String, String)],
    devices: &[(String, String, String)],
    didcomm: String,
) -> DidDocument {
    let mut doc = DidDocument::new(did);
    let control = Relationships { capability: true, ..Default::default() };
    doc.add_key("root", root_key.to_owned(), control);
    for (id, key) in issuing {
        doc.add_key(
            &format!("issuing-{id}"),
            key.clone(),
            Relationships { assertion_method: true, ..Default::default() },
        );
    }
    for (id, sign_key, agree_key) in devices {
        doc.add_key(
            &format!("device-{id}"),
            sign_key.clone(),
            Relationships { authentication: true, ..Default::default() },
        );
        doc.add_key(
            &format!("device-{id}-x25519"),
            agree_key.clone(),
            Relationships { key_agreement: true, ..Default::default() },
        );
    }
    doc.service.push(Service {
        id: doc.id.url("didcomm"),
        kind: "DIDCommMessaging".into(),
        service_endpoint: serde_json::json!({"uri": didcomm, "accept": ["didcomm/v2"]}),
    });
    doc
}
