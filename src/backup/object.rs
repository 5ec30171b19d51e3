//! A repository on an S3-compatible object store (`s3://bucket/prefix`),
//! through `object_store` with the standard `AWS_*` environment variables
//! and an endpoint override (`AWS_ENDPOINT_URL`), so MinIO, Ceph, R2 or AWS
//! all work. A single PUT is atomic on S3: an object is either whole or absent.

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::repo::{Repository, check_name};
use crate::error::{Error, Result};

pub struct S3Repository {
    store: AmazonS3,
    url: String,
    prefix: String,
    runtime: tokio::runtime::Runtime,
}

fn err(what: &str, url: &str, e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{url}: {what}: {e}"))
}

impl S3Repository {
    /// Opens `s3://bucket/prefix`.
    pub fn open(url: &str) -> Result<S3Repository> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| Error::Usage(format!("{url}: not an s3:// URL")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Usage(format!("{url}: no bucket name")));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            check_name(&prefix)?;
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            builder =
                builder.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint).with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(|e| err("configure", url, e))?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::io("start async runtime", url, e))?;
        Ok(S3Repository { store, url: url.to_string(), prefix, runtime })
    }

    fn key(&self, name: &str) -> Result<ObjectPath> {
        check_name(name)?;
        let full = if self.prefix.is_empty() { name.to_string() } else { format!("{}/{name}", self.prefix) };
        ObjectPath::parse(&full).map_err(|e| err("object name", &self.url, e))
    }
}

impl Repository for S3Repository {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let key = self.key(name)?;
        let payload = PutPayload::from(bytes.to_vec());
        self.runtime.block_on(self.store.put(&key, payload)).map(|_| ()).map_err(|e| err(&format!("put {name}"), &self.url, e))
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        let key = self.key(name)?;
        self.runtime
            .block_on(async { self.store.get(&key).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|e| err(&format!("get {name}"), &self.url, e))
    }

    fn exists(&self, name: &str) -> Result<bool> {
        let key = self.key(name)?;
        match self.runtime.block_on(self.store.head(&key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(err(&format!("head {name}"), &self.url, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let key = self.key(prefix)?;
        let listing =
            self.runtime.block_on(self.store.list_with_delimiter(Some(&key))).map_err(|e| err(&format!("list {prefix}"), &self.url, e))?;
        let mut out: Vec<String> = listing
            .objects
            .into_iter()
            .filter_map(|o| o.location.filename().map(|f| format!("{prefix}/{f}")))
            .filter(|n| !n.rsplit('/').next().unwrap_or("").starts_with('.'))
            .collect();
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let key = self.key(name)?;
        match self.runtime.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(err(&format!("delete {name}"), &self.url, e)),
        }
    }
}

/// A directory path or an `s3://bucket/prefix` URL.
pub fn open_repository(location: &str) -> Result<Box<dyn Repository>> {
    if location.starts_with("s3://") {
        Ok(Box::new(S3Repository::open(location)?))
    } else {
        Ok(Box::new(super::DirRepository::open(std::path::Path::new(location))?))
    }
}
