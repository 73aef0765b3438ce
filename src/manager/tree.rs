//! The command tree of `proxmox-backup-manager` (names, parameters, positionals).

use pbs_cli::{CommandTree, Param, ValueKind};

fn output_format() -> Param {
    Param::optional("output-format", "Output format: text, json or json-pretty.")
}

fn digest() -> Param {
    Param::optional(
        "digest",
        "Prevent changes if current configuration file has a different SHA256 digest.",
    )
}

fn boolean(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        kind: ValueKind::Boolean { default: false },
        optional: true,
        description,
    }
}

fn boolean_default_true(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        kind: ValueKind::Boolean { default: true },
        optional: true,
        description,
    }
}

/// The updatable datastore properties (without `name`/`path`).
fn datastore_properties() -> Vec<Param> {
    vec![
        Param::optional("comment", "Comment."),
        Param::optional(
            "gc-schedule",
            "Run garbage collection job at specified schedule.",
        ),
        boolean(
            "verify-new",
            "If enabled, all new backups will be verified right after completion.",
        ),
        Param::optional(
            "notify-user",
            "User ID of the notification recipient (legacy).",
        ),
        Param::optional(
            "notify",
            "Datastore notification setting: [gc=<n>][,verify=<n>][,sync=<n>][,prune=<n>].",
        ),
        Param::optional(
            "notification-mode",
            "Notification mode: legacy-sendmail or notification-system.",
        ),
        Param::optional(
            "tuning",
            "Datastore tuning options: [chunk-order=none|inode][,sync-level=none|file|filesystem].",
        ),
        Param::optional(
            "maintenance-mode",
            "Maintenance mode: type=<read-only|offline|delete>[,message=<text>].",
        ),
    ]
}

fn prune_properties() -> Vec<Param> {
    vec![
        Param::optional(
            "prune-schedule",
            "Run prune job at specified schedule (creates a prune job).",
        ),
        Param::integer("keep-last", "Number of backups to keep."),
        Param::integer("keep-hourly", "Number of hourly backups to keep."),
        Param::integer("keep-daily", "Number of daily backups to keep."),
        Param::integer("keep-weekly", "Number of weekly backups to keep."),
        Param::integer("keep-monthly", "Number of monthly backups to keep."),
        Param::integer("keep-yearly", "Number of yearly backups to keep."),
    ]
}

fn datastore_tree() -> CommandTree {
    let name = Param::required("name", "Datastore name.");
    let mut create = vec![
        name.clone(),
        Param::required("path", "Directory name (absolute path)."),
    ];
    create.extend(datastore_properties());
    create.extend(prune_properties());
    create.push(output_format());
    let mut update = vec![name.clone()];
    update.extend(datastore_properties());
    update.extend(prune_properties());
    update.push(Param::array("delete", "List of properties to delete."));
    update.push(digest());
    CommandTree::Group(vec![
        ("create", CommandTree::leaf("Create a new datastore.", create, vec!["name", "path"])),
        ("list", CommandTree::leaf("List all datastores.", vec![output_format()], vec![])),
        (
            "remove",
            CommandTree::leaf(
                "Remove a datastore configuration.",
                vec![
                    name.clone(),
                    boolean("keep-job-configs", "If enabled, the job configurations related to this datastore will be kept."),
                    boolean("destroy-data", "Delete the datastore's underlying contents."),
                    digest(),
                ],
                vec!["name"],
            ),
        ),
        (
            "show",
            CommandTree::leaf("Show datastore configuration.", vec![name, output_format()], vec!["name"]),
        ),
        ("update", CommandTree::leaf("Update datastore configuration.", update, vec!["name"])),
    ])
}

fn user_properties() -> Vec<Param> {
    vec![
        Param::optional("comment", "Comment."),
        boolean_default_true(
            "enable",
            "Enable the account (default). You can set this to '0' to disable the account.",
        ),
        Param::integer(
            "expire",
            "Account expiration date (seconds since epoch). '0' means no expiration date.",
        ),
        Param::optional("firstname", "First name."),
        Param::optional("lastname", "Last name."),
        Param::optional("email", "E-Mail Address."),
    ]
}

fn user_tree() -> CommandTree {
    let userid = Param::required("userid", "User ID.");
    let token_name = Param::required(
        "token-name",
        "The token ID part of an API token authentication id.",
    );
    let mut create = vec![userid.clone()];
    create.extend(user_properties());
    create.push(Param::optional("password", "User Password."));
    let mut update = vec![userid.clone()];
    update.extend(user_properties());
    update.push(Param::optional("password", "User Password."));
    update.push(Param::array("delete", "List of properties to delete."));
    update.push(digest());
    CommandTree::Group(vec![
        ("create", CommandTree::leaf("Create new user.", create, vec!["userid"])),
        (
            "delete-token",
            CommandTree::leaf(
                "Delete a user's API token.",
                vec![userid.clone(), token_name.clone(), digest()],
                vec!["userid", "token-name"],
            ),
        ),
        (
            "generate-token",
            CommandTree::leaf(
                "Generate a new API token with given metadata.",
                vec![
                    userid.clone(),
                    token_name,
                    Param::optional("comment", "Comment."),
                    boolean_default_true("enable", "Enable the token (default)."),
                    Param::integer("expire", "Token expiration date (seconds since epoch). '0' means no expiration date."),
                    digest(),
                ],
                vec!["userid", "token-name"],
            ),
        ),
        ("list", CommandTree::leaf("List configured users.", vec![output_format()], vec![])),
        (
            "list-tokens",
            CommandTree::leaf(
                "List tokens associated with user.",
                vec![userid.clone(), output_format()],
                vec!["userid"],
            ),
        ),
        (
            "permissions",
            CommandTree::leaf(
                "List permissions of user/token.",
                vec![
                    Param::required("auth-id", "Authentication ID (user or API token)."),
                    Param::optional("path", "Only list permissions for this ACL path."),
                    output_format(),
                ],
                vec!["auth-id"],
            ),
        ),
        (
            "remove",
            CommandTree::leaf("Remove user.", vec![userid.clone(), digest()], vec!["userid"]),
        ),
        ("update", CommandTree::leaf("Update user configuration.", update, vec!["userid"])),
    ])
}

fn acl_tree() -> CommandTree {
    CommandTree::Group(vec![
        (
            "list",
            CommandTree::leaf("List access control list.", vec![output_format()], vec![]),
        ),
        (
            "update",
            CommandTree::leaf(
                "Update Access Control List (ACLs).",
                vec![
                    Param::required("path", "Access control path."),
                    Param::required("role", "Role name."),
                    boolean_default_true("propagate", "Allow to propagate (inherit) permissions."),
                    Param::optional("auth-id", "Authentication ID (user or API token)."),
                    Param::optional("group", "Group ID."),
                    boolean("delete", "Remove permissions (instead of adding it)."),
                    digest(),
                ],
                vec!["path", "role"],
            ),
        ),
    ])
}

fn task_tree() -> CommandTree {
    let upid = Param::required("upid", "Unique Process/Task ID.");
    CommandTree::Group(vec![
        (
            "list",
            CommandTree::leaf(
                "List running server tasks.",
                vec![
                    Param::integer(
                        "limit",
                        "The maximal number of tasks to list (1..1000, default 50).",
                    ),
                    boolean("all", "Also list stopped tasks."),
                    output_format(),
                ],
                vec![],
            ),
        ),
        (
            "log",
            CommandTree::leaf("Display the task log.", vec![upid.clone()], vec!["upid"]),
        ),
        (
            "stop",
            CommandTree::leaf("Try to stop a specific task.", vec![upid], vec!["upid"]),
        ),
    ])
}

fn gc_tree() -> CommandTree {
    let store = Param::required("store", "Datastore name.");
    CommandTree::Group(vec![
        (
            "list",
            CommandTree::leaf(
                "List garbage collection job status.",
                vec![output_format()],
                vec![],
            ),
        ),
        (
            "start",
            CommandTree::leaf(
                "Start garbage collection for a specific datastore.",
                vec![store.clone(), output_format()],
                vec!["store"],
            ),
        ),
        (
            "status",
            CommandTree::leaf(
                "Show garbage collection status for a specific datastore.",
                vec![store, output_format()],
                vec!["store"],
            ),
        ),
    ])
}

fn verify_leaf() -> CommandTree {
    CommandTree::leaf(
        "Verify backups of a datastore (as a task).",
        vec![
            Param::required("store", "Datastore name."),
            Param::optional("ns", "Namespace to verify (default: root)."),
            Param::integer(
                "max-depth",
                "How many levels of namespaces below 'ns' are included.",
            ),
            boolean(
                "ignore-verified",
                "Skip snapshots that were verified already (default true).",
            ),
            Param::integer(
                "outdated-after",
                "Re-verify snapshots whose last verification is older than this many days.",
            ),
            output_format(),
        ],
        vec!["store"],
    )
}

fn cert_tree() -> CommandTree {
    CommandTree::Group(vec![
        (
            "info",
            CommandTree::leaf("Display node certificate information.", vec![], vec![]),
        ),
        (
            "update",
            CommandTree::leaf(
                "Update node certificates and generate all needed files/directories.",
                vec![boolean("force", "Force generation of new SSL certificate.")],
                vec![],
            ),
        ),
    ])
}

/// The name of the help command (top level only).
pub const HELP: &str = "help";

/// The full command tree, including `help`.
pub fn command_tree() -> CommandTree {
    CommandTree::Group(vec![
        ("acl", acl_tree()),
        ("cert", cert_tree()),
        ("datastore", datastore_tree()),
        ("garbage-collection", gc_tree()),
        (
            HELP,
            CommandTree::leaf(
                "Get help about specified command (or sub-command).",
                vec![
                    Param::array(
                        "command",
                        "Command. This may be a list in order to specify nested sub-commands.",
                    ),
                    boolean("verbose", "Verbose help."),
                ],
                vec!["command"],
            ),
        ),
        ("task", task_tree()),
        ("user", user_tree()),
        ("verify", verify_leaf()),
        (
            "versions",
            CommandTree::leaf(
                "List package versions for important Proxmox Backup Server packages.",
                vec![
                    boolean("verbose", "Output verbose package information."),
                    output_format(),
                ],
                vec![],
            ),
        ),
    ])
}
