//! A repository on an S3-compatible object store (`s3://bucket/prefix`),
//! through `object_store` with the standard `AWS_*` environment variables
//! and an endpoint override (`AWS_ENDPOINT_URL`), so MinIO, Ceph, R2 or AWS
//! all work. Objects stream both ways: a read pulls the body chunk by chunk;
//! a write sends one PUT when the object fits in one part (a single PUT is
//! atomic) and a multipart upload otherwise (visible only once completed).

use std::io::Read;

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::error::RepoError;
use super::repo::{Repository, check_name};

/// Bytes per uploaded part (S3 wants at least 5 MiB but the last).
const PART: usize = 8 << 20;
/// Parts in flight at once: memory of an upload is about PART × (this + 1).
const PARTS_IN_FLIGHT: usize = 2;

pub struct S3Repository {
    store: AmazonS3,
    url: String,
    prefix: String,
    runtime: tokio::runtime::Runtime,
}

fn bad_address(url: &str, message: impl Into<String>) -> RepoError {
    RepoError::BadAddress { url: url.to_string(), message: message.into() }
}

impl S3Repository {
    /// Opens `s3://bucket/prefix`, configured from the process's `AWS_*`
    /// environment variables.
    pub fn open(url: &str) -> Result<S3Repository, RepoError> {
        let vars = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        S3Repository::open_with_vars(url, vars)
    }

    /// Opens `s3://bucket/prefix`, configured from these `AWS_*` variables
    /// instead of the environment (the conformance tests start a server per
    /// test, and changing the environment of a running process is unsound).
    pub fn open_with_vars(url: &str, vars: impl IntoIterator<Item = (String, String)>) -> Result<S3Repository, RepoError> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad_address(url, "not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad_address(url, "no bucket name"));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            check_name(&prefix)?;
        }
        // What AmazonS3Builder::from_env does, from `vars`.
        let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
        let mut endpoint = None;
        for (key, value) in vars.into_iter().filter(|(k, _)| k.starts_with("AWS_")) {
            if key == "AWS_ENDPOINT_URL" {
                endpoint = Some(value.clone());
            }
            if let Ok(config_key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(config_key, value);
            }
        }
        if let Some(endpoint) = endpoint {
            builder =
                builder.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint).with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(|e| bad_address(url, format!("configure: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| RepoError::Io {
            location: url.to_string(),
            op: "start async runtime",
            name: String::new(),
            source: e,
        })?;
        Ok(S3Repository { store, url: url.to_string(), prefix, runtime })
    }

    fn key(&self, name: &str) -> Result<ObjectPath, RepoError> {
        check_name(name)?;
        let full = if self.prefix.is_empty() { name.to_string() } else { format!("{}/{name}", self.prefix) };
        ObjectPath::parse(&full).map_err(|e| RepoError::BadName { name: format!("{full} ({e})") })
    }

    fn err(&self, op: &'static str, name: &str) -> impl FnOnce(object_store::Error) -> RepoError + '_ {
        let name = name.to_string();
        move |source| RepoError::Store { location: self.url.clone(), op, name, source: Box::new(source) }
    }

    /// Reads up to one part from `reader`; returns the bytes (fewer than a
    /// part only at the end of the stream).
    fn fill(&self, name: &str, reader: &mut dyn Read, buf: &mut Vec<u8>) -> Result<(), RepoError> {
        buf.clear();
        reader.take(PART as u64).read_to_end(buf).map(|_| ()).map_err(|e| RepoError::Io {
            location: self.url.clone(),
            op: "read source",
            name: name.into(),
            source: e,
        })
    }
}

/// A blocking reader over an object's body stream.
struct BodyReader<'a> {
    runtime: &'a tokio::runtime::Runtime,
    stream: BoxStream<'static, object_store::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

impl Repository for S3Repository {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn open_reader(&self, name: &str) -> Result<Box<dyn Read + '_>, RepoError> {
        let key = self.key(name)?;
        let got = self.runtime.block_on(self.store.get(&key)).map_err(self.err("get", name))?;
        Ok(Box::new(BodyReader { runtime: &self.runtime, stream: got.into_stream(), chunk: bytes::Bytes::new() }))
    }

    fn write_from(&self, name: &str, reader: &mut dyn Read) -> Result<u64, RepoError> {
        let key = self.key(name)?;
        let mut buf = Vec::with_capacity(PART);
        self.fill(name, reader, &mut buf)?;
        if buf.len() < PART {
            // One part holds it all: a single PUT, atomic by itself.
            let n = buf.len() as u64;
            self.runtime.block_on(self.store.put(&key, PutPayload::from(buf))).map_err(self.err("put", name))?;
            return Ok(n);
        }
        // WriteMultipart::write spawns each full part's upload as a task, which
        // needs the runtime's context even outside `block_on`.
        let _context = self.runtime.enter();
        let upload = self.runtime.block_on(self.store.put_multipart(&key)).map_err(self.err("start upload", name))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut total = 0u64;
        let sent = loop {
            if buf.is_empty() {
                break Ok(());
            }
            if let Err(e) = self.runtime.block_on(w.wait_for_capacity(PARTS_IN_FLIGHT)) {
                break Err(self.err("upload part", name)(e));
            }
            w.write(&buf);
            total += buf.len() as u64;
            if let Err(e) = self.fill(name, reader, &mut buf) {
                break Err(e);
            }
        };
        match sent {
            Ok(()) => self.runtime.block_on(w.finish()).map(|_| total).map_err(self.err("complete upload", name)),
            Err(e) => {
                // An aborted upload leaves no object behind.
                let _ = self.runtime.block_on(w.abort());
                Err(e)
            }
        }
    }

    fn exists(&self, name: &str) -> Result<bool, RepoError> {
        let key = self.key(name)?;
        match self.runtime.block_on(self.store.head(&key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err("head", name)(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, RepoError> {
        let key = self.key(prefix)?;
        let listing = self.runtime.block_on(self.store.list_with_delimiter(Some(&key))).map_err(self.err("list", prefix))?;
        let mut out: Vec<String> = listing
            .objects
            .into_iter()
            .filter_map(|o| o.location.filename().map(|f| format!("{prefix}/{f}")))
            .filter(|n| !n.rsplit('/').next().unwrap_or("").starts_with('.'))
            .collect();
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<(), RepoError> {
        let key = self.key(name)?;
        match self.runtime.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", name)(e)),
        }
    }
}

/// A directory path or an `s3://bucket/prefix` URL.
pub fn open_repository(location: &str) -> Result<Box<dyn Repository>, RepoError> {
    if location.starts_with("s3://") {
        Ok(Box::new(S3Repository::open(location)?))
    } else {
        Ok(Box::new(super::DirRepository::open(std::path::Path::new(location))?))
    }
}
