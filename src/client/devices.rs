//! The account's devices (docs/devices.md): for now the account's own
//! signed device list, kept in the store and published on the relay with
//! the prekeys, so that contacts can find and verify every device.

use sotto_core::{DeviceList, SignedDeviceList};
use sotto_relay::{ClientError, ErrorCode, RelayClient};

use super::Client;
use super::shared::{Shared, now_ms};
use crate::error::Result;

impl Shared {
    /// Publishes the account's current signed device list (made on first
    /// use: this device alone); publishing it again changes nothing. When
    /// the relay holds a newer one signed by this account, the profile
    /// takes that one.
    pub(crate) async fn publish_device_list(&self, conn: &RelayClient) -> Result<()> {
        let signed = self.with_store(|s| s.own_device_list(now_ms())).await?;
        match conn.publish_device_list(&signed.to_bytes()).await {
            Ok(version) => {
                tracing::debug!(version, "device list published");
                Ok(())
            }
            // The relay holds a newer list of this account, published from
            // elsewhere (a profile restored from an archive holds none):
            // take it if the account key signed it.
            Err(ClientError::Server {
                code: ErrorCode::StaleDeviceList,
                ..
            }) => self.adopt_published_device_list(conn).await,
            Err(e) => Err(e.into()),
        }
    }

    async fn adopt_published_device_list(&self, conn: &RelayClient) -> Result<()> {
        let Some(published) = conn.fetch_device_list(&self.address.mailbox()).await? else {
            return Ok(());
        };
        let signed =
            SignedDeviceList::from_bytes(&published).map_err(sotto_store::Error::Protocol)?;
        let adopted = self
            .with_store(move |s| s.adopt_own_device_list(&signed))
            .await?;
        tracing::info!(
            adopted,
            "the relay holds a newer device list of this account"
        );
        Ok(())
    }
}

impl Client {
    /// This account's devices: the device list its account key signed
    /// (version 1, this device alone, until devices are linked).
    pub async fn devices(&self) -> Result<DeviceList> {
        let account = *self.shared.identity.public();
        let signed = self
            .shared
            .with_store(|s| s.own_device_list(now_ms()))
            .await?;
        Ok(signed
            .verify(&account)
            .map_err(sotto_store::Error::Protocol)?)
    }
}
