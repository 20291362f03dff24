//! Revoking the device in use, or the account's last device, needs confirmation: the real
//! `sichat` refuses without `--yes` and says what it would mean; the node refuses to revoke
//! the last active device unless the root operation says it is meant.

use sichat_e2e::{json, sichat, stderr, storage_tests, Backend, TestApp};
use std::path::Path;

storage_tests!(revoking_this_or_the_last_device_needs_confirmation);

async fn device_ids(wallet: &Path) -> Vec<String> {
    let out = sichat(wallet, &["--json", "device", "list"]).await;
    assert!(out.status.success(), "device list: {}", stderr(&out));
    json(&out).as_array().expect("list").iter().map(|d| d["id"].as_str().expect("id").to_owned()).collect()
}

async fn revoking_this_or_the_last_device_needs_confirmation(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let alice = app.join("alice", &app.owner_invite).await;
    let [laptop_id] = device_ids(&alice).await.try_into().expect("one device");

    // This device: refused by the wallet, with what it means and what to do.
    let out = sichat(&alice, &["device", "revoke", &laptop_id]).await;
    assert!(!out.status.success(), "revoking the device in use needs --yes");
    let said = stderr(&out);
    assert!(said.contains("is this device") && said.contains("--yes") && said.contains("sichat device add"), "{said}");
    assert_eq!(device_ids(&alice).await, std::slice::from_ref(&laptop_id), "nothing was revoked");

    // With a phone added, the laptop may go (confirmed): the phone remains.
    let phone = app.wallet("alice-phone");
    let out =
        sichat(&alice, &["--json", "device", "add", "--name", "phone", "--out", phone.to_str().expect("path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let phone_id = json(&out)["device_id"].as_str().expect("id").to_owned();
    let out = sichat(&alice, &["device", "revoke", &laptop_id, "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(device_ids(&phone).await, std::slice::from_ref(&phone_id));

    // The phone is now the last device: the node refuses to revoke it without confirmation
    // (the laptop's wallet cannot even sign in to count), and the wallet says why.
    let out = sichat(&alice, &["device", "revoke", &phone_id]).await;
    assert!(!out.status.success(), "revoking the last device needs --yes");
    let said = stderr(&out);
    assert!(said.contains("last active device") && said.contains("--yes"), "{said}");
    assert_eq!(device_ids(&phone).await, std::slice::from_ref(&phone_id), "the phone still works");

    // Confirmed, it goes.
    let out = sichat(&alice, &["device", "revoke", &phone_id, "--yes"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = sichat(&phone, &["device", "list"]).await;
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    app.stop().await;
}
