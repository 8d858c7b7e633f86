//! Where manifest files come from: the working tree, or one commit of the enclosing Git
//! repository read through git2 (blobs from the tree; nothing checked out, the working tree untouched).

use std::path::{Component, Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--git-ref needs {dir} to be inside a Git repository: {source}")]
    NoRepository {
        dir: PathBuf,
        #[source]
        source: git2::Error,
    },
    /// libgit2, as git, refuses a repository another user owns (CVE-2022-24765): in a
    /// container the mounted checkout belongs to the host's user. It is opened only once
    /// trusted explicitly, as git does it.
    #[error(
        "{dir} is in a Git repository owned by another user, which git and estate refuse to read unless it is trusted: if you trust it, run `git config --global --add safe.directory {repo}` (the estate container image trusts /work)"
    )]
    NotTrusted { dir: PathBuf, repo: String },
    #[error("cannot resolve git ref `{reference}`: {source}")]
    BadRef {
        reference: String,
        #[source]
        source: git2::Error,
    },
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("{0} is outside the repository")]
    OutsideRepository(String),
}

/// The repository enclosing `dir`, or why not: a repository another user owns is
/// [`SourceError::NotTrusted`] unless git's `safe.directory` names it.
pub fn open_repository(dir: &Path) -> Result<git2::Repository, SourceError> {
    git2::Repository::discover(dir).map_err(|source| {
        if source.code() == git2::ErrorCode::Owner {
            not_trusted(dir, &source)
        } else {
            SourceError::NoRepository {
                dir: dir.to_path_buf(),
                source,
            }
        }
    })
}

/// The repository's path, as `safe.directory` takes it: libgit2 names it in its message
/// ("repository path '/work/' is not owned by current user").
fn not_trusted(dir: &Path, e: &git2::Error) -> SourceError {
    let repo = e
        .message()
        .split('\'')
        .nth(1)
        .map(|p| p.trim_end_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| dir.display().to_string());
    SourceError::NotTrusted {
        dir: dir.to_path_buf(),
        repo,
    }
}

/// Most symbolic links followed to reach one file of a commit: real trees chain one or two.
const MAX_GIT_SYMLINKS: usize = 8;

/// Files of a manifest, addressed by paths relative to the manifest folder (`..` allowed:
/// templates often live beside it).
pub struct ManifestSource {
    /// The folder as the user named it, for messages and plan headers.
    pub display_root: PathBuf,
    /// Commit the files come from (`--git-ref`), or HEAD of the enclosing repository.
    pub commit: Option<String>,
    /// The working tree differs from `commit` (only for working-tree sources).
    pub dirty: bool,
    origin: Origin,
}

enum Origin {
    WorkTree {
        root: PathBuf,
        /// Canonical folder every file must resolve inside: the enclosing repository's work
        /// tree, or the manifest folder when there is none.
        bound: PathBuf,
    },
    Git {
        repo: git2::Repository,
        tree: git2::Oid,
        /// The manifest folder relative to the repository root.
        prefix: PathBuf,
    },
}

impl ManifestSource {
    /// The working tree at `dir`; the enclosing repository's HEAD (if any) is recorded.
    pub fn work_tree(dir: &Path) -> Result<Self, SourceError> {
        if !dir.is_dir() {
            return Err(SourceError::NotADirectory(dir.to_path_buf()));
        }
        let canonical = |p: &Path| {
            std::fs::canonicalize(p).map_err(|source| SourceError::Io {
                path: p.display().to_string(),
                source,
            })
        };
        let mut bound = canonical(dir)?;
        let (commit, dirty) = match git2::Repository::discover(dir) {
            Ok(repo) => {
                if let Some(workdir) = repo.workdir() {
                    bound = canonical(workdir)?;
                }
                let commit = repo
                    .head()
                    .ok()
                    .and_then(|h| h.peel_to_commit().ok())
                    .map(|c| c.id().to_string());
                let mut opts = git2::StatusOptions::new();
                opts.include_untracked(true).include_ignored(false);
                let dirty = repo
                    .statuses(Some(&mut opts))
                    .map(|s| !s.is_empty())
                    .unwrap_or(false);
                (commit, dirty)
            }
            // Not trusted: read as plain files, paths held to the manifest folder, no commit.
            Err(e) => {
                if e.code() == git2::ErrorCode::Owner {
                    tracing::warn!(
                        "{}",
                        not_trusted(dir, &e).to_string().replace("--git-ref ", "")
                    );
                }
                (None, false)
            }
        };
        Ok(ManifestSource {
            display_root: dir.to_path_buf(),
            commit,
            dirty,
            origin: Origin::WorkTree {
                root: dir.to_path_buf(),
                bound,
            },
        })
    }

    /// The tree of `reference` (branch, tag, sha, `HEAD~1`...) in the repository enclosing `dir`.
    pub fn git_ref(dir: &Path, reference: &str) -> Result<Self, SourceError> {
        let repo = open_repository(dir)?;
        let object = repo
            .revparse_single(reference)
            .map_err(|source| SourceError::BadRef {
                reference: reference.to_string(),
                source,
            })?;
        let commit = object
            .peel_to_commit()
            .map_err(|source| SourceError::BadRef {
                reference: reference.to_string(),
                source,
            })?;
        let workdir = repo
            .workdir()
            .ok_or_else(|| SourceError::OutsideRepository(dir.display().to_string()))?;
        let abs_dir = std::fs::canonicalize(dir).map_err(|source| SourceError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let abs_work = std::fs::canonicalize(workdir).map_err(|source| SourceError::Io {
            path: workdir.display().to_string(),
            source,
        })?;
        let prefix = abs_dir
            .strip_prefix(&abs_work)
            .map_err(|_| SourceError::OutsideRepository(dir.display().to_string()))?
            .to_path_buf();
        let tree = commit.tree()?.id();
        let commit_id = commit.id().to_string();
        drop(commit);
        drop(object);
        Ok(ManifestSource {
            display_root: dir.to_path_buf(),
            commit: Some(commit_id),
            dirty: false,
            origin: Origin::Git { repo, tree, prefix },
        })
    }

    /// Reads a file given relative to the manifest folder.
    pub fn read(&self, rel: &Path) -> Result<Vec<u8>, SourceError> {
        let io = |source| SourceError::Io {
            path: self.display(rel),
            source,
        };
        let outside = || SourceError::OutsideRepository(self.display(rel));
        match &self.origin {
            Origin::WorkTree { root, bound } => {
                // `..`, an absolute path or a symbolic link must not reach a file outside the
                // repository: resolve all three before reading a byte.
                let abs = normalize(&bound_join(bound, root, rel)?).ok_or_else(outside)?;
                if !abs.starts_with(bound) {
                    return Err(outside());
                }
                let real = std::fs::canonicalize(&abs).map_err(io)?;
                if !real.starts_with(bound) {
                    return Err(outside());
                }
                std::fs::read(real).map_err(io)
            }
            Origin::Git { repo, tree, prefix } => {
                let mut path = prefix.join(rel);
                let tree = repo.find_tree(*tree)?;
                let mut hops = 0;
                let entry = loop {
                    path = normalize(&path)
                        .filter(|p| {
                            p.is_relative()
                                && !matches!(p.components().next(), Some(Component::ParentDir))
                        })
                        .ok_or_else(outside)?;
                    let entry = tree.get_path(&path).map_err(|_| {
                        io(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "no such file in that commit",
                        ))
                    })?;
                    // A symbolic link is a blob holding its target: follow it within the tree.
                    if entry.filemode() != 0o120_000 {
                        break entry;
                    }
                    hops += 1;
                    if hops > MAX_GIT_SYMLINKS {
                        return Err(io(std::io::Error::other("too many symbolic links")));
                    }
                    let target = entry.to_object(repo)?.peel_to_blob()?;
                    let target = String::from_utf8_lossy(target.content()).into_owned();
                    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
                    path = parent.join(target);
                };
                let blob = entry.to_object(repo)?.peel_to_blob().map_err(|_| {
                    io(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "not a file",
                    ))
                })?;
                Ok(blob.content().to_vec())
            }
        }
    }

    /// Every file under the manifest folder, relative to it, sorted.
    pub fn list_files(&self) -> Result<Vec<PathBuf>, SourceError> {
        let mut files = Vec::new();
        match &self.origin {
            Origin::WorkTree { root, .. } => {
                for entry in walkdir::WalkDir::new(root).into_iter().filter_entry(|e| {
                    // Build output and VCS metadata are never manifest files.
                    let name = e.file_name().to_string_lossy();
                    e.depth() == 0 || !(name == ".git" || name == "target" || name == ".venv")
                }) {
                    let entry = entry.map_err(|e| SourceError::Io {
                        path: root.display().to_string(),
                        source: e.into(),
                    })?;
                    if entry.file_type().is_file() {
                        if let Ok(rel) = entry.path().strip_prefix(root) {
                            files.push(rel.to_path_buf());
                        }
                    }
                }
            }
            Origin::Git { repo, tree, prefix } => {
                let tree = repo.find_tree(*tree)?;
                let sub = if prefix.as_os_str().is_empty() {
                    tree
                } else {
                    match tree.get_path(prefix) {
                        Ok(e) => e.to_object(repo)?.peel_to_tree()?,
                        Err(_) => return Ok(files),
                    }
                };
                sub.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
                    if entry.kind() == Some(git2::ObjectType::Blob) {
                        if let Ok(name) = entry.name() {
                            files.push(Path::new(dir).join(name));
                        }
                    }
                    git2::TreeWalkResult::Ok
                })?;
            }
        }
        files.sort();
        Ok(files)
    }

    /// A path relative to the manifest folder as users should see it in messages.
    pub fn display(&self, rel: &Path) -> String {
        let joined = self.display_root.join(rel);
        let normal = normalize(&joined).unwrap_or(joined);
        normal.to_string_lossy().replace('\\', "/")
    }
}

/// `rel` (relative to the manifest folder `root`) as an absolute path under the canonical
/// `bound`, so it can be compared with it.
fn bound_join(bound: &Path, root: &Path, rel: &Path) -> Result<PathBuf, SourceError> {
    let root = std::fs::canonicalize(root).map_err(|source| SourceError::Io {
        path: root.display().to_string(),
        source,
    })?;
    debug_assert!(root.starts_with(bound));
    Ok(root.join(rel))
}

/// Lexically resolves `.` and `..`; `None` when `..` climbs above the start.
pub fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::ParentDir) | None => out.push(c),
                Some(_) => return None,
            },
            other => out.push(other),
        }
    }
    if matches!(out.first(), Some(Component::ParentDir)) && !path.is_relative() {
        return None;
    }
    Some(out.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dots() {
        assert_eq!(
            normalize(Path::new("a/b/../c/./d.yaml")).unwrap(),
            PathBuf::from("a/c/d.yaml")
        );
        assert_eq!(
            normalize(Path::new("a/../../t.yaml")).unwrap(),
            PathBuf::from("../t.yaml")
        );
    }
}
