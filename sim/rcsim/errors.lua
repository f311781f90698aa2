-- The API error codes a failed task carries in response.error, with the HTTP status word and the
-- description the real API gives each, and the additionalInfo some of them come with.
local M = {}

local CATALOG = {
  SUBSCRIPTION_NOT_FOUND = { "404 NOT_FOUND", "Subscription was not found" },
  SUBSCRIPTION_NOT_ACTIVE = { "403 FORBIDDEN",
    "Cannot preform any actions for subscription that is not in an active state" },
  SUBSCRIPTION_IN_USE = { "400 BAD_REQUEST", "Subscription cannot be deleted while it still has databases" },
  SUBSCRIPTION_PROVISION_FAILURE = { "400 BAD_REQUEST", "The request failed while provisioning resources" },
  TOO_MANY_PENDING_SUBSCRIPTIONS = { "400 BAD_REQUEST",
    "Too many subscriptions are being created or changed at the same time" },
  ADDING_REGION_IS_NOT_ALLOWED_WITH_SINGLE_REGION_SUBSCRIPTION = { "400 BAD_REQUEST",
    "Adding a region is not allowed with a single-region subscription" },
  FIXED_SUBSCRIPTION_ACCOUNT_ALREADY_HAS_A_FREE_PLAN = { "400 BAD_REQUEST",
    "The account already has a free plan Essentials subscription." },
  DATABASE_NOT_FOUND = { "404 NOT_FOUND", "Database was not found" },
  DATABASE_BACKUP_DISABLED = { "400 BAD_REQUEST", "Database backup is disabled" },
  DATABASE_IMPORT_URI_NOT_PROVIDED = { "400 BAD_REQUEST", "Import source URI was not provided" },
  PROVISION_FAILURE = { "400 BAD_REQUEST", "The request failed while provisioning resources" },
  GENERAL_ERROR = { "500 INTERNAL_SERVER_ERROR",
    "General error occurred. Please contact Redis Labs support with your task ID" },
  ACL_REDIS_RULE_NOT_FOUND = { "404 NOT_FOUND", "ACL redis rule not found" },
  ACL_REDIS_RULE_PATTERN_NOT_VALID = { "400 BAD_REQUEST",
    "Invalid ACL redis rule: commands must start with a + or - sign, categories must start with +@ or -@ " ..
    "characters and keys must start with the ~ symbol", "redis-acl-wrong-acl-rule-pattern" },
  ACL_ROLE_NOT_FOUND = { "404 NOT_FOUND", "ACL role not found" },
  ACL_ROLE_DOES_NOT_EXISTS = { "400 BAD_REQUEST", "ACL role associated with a user has to exist." },
  ACL_USER_NOT_FOUND = { "404 NOT_FOUND", "ACL user not found" },
  ACL_USER_PASSWORD_NOT_VALID = { "400 BAD_REQUEST", "ACL user password is not valid.",
    "cluster-user-password-wrong-pattern" },
  USER_NOT_FOUND = { "404 NOT_FOUND", "User was not found" },
  CLOUD_ACCOUNT_NOT_FOUND = { "404 NOT_FOUND", "Cloud account was not found", "cloud-account-does-not-exists" },
  VPC_PEERING_NOT_FOUND = { "404 NOT_FOUND", "VPC peering was not found" },
  ACTIVE_ACTIVE_VPC_PEERING_NOT_FOUND = { "404 NOT_FOUND", "Active-Active VPC peering was not found" },
  TGW_DOES_NOT_EXIST = { "404 NOT_FOUND", "Transit gateway does not exist" },
  TGW_ATTACHMENT_DOES_NOT_EXIST = { "404 NOT_FOUND", "Transit gateway attachment does not exist" },
  TGW_RESOURCE_SHARE_DOES_NOT_EXIST = { "404 NOT_FOUND", "Transit gateway resource share does not exist" },
  PSC_SERVICE_NOT_FOUND = { "404 NOT_FOUND", "Private Service Connect service not found" },
  PSC_ENDPOINT_NOT_FOUND = { "404 NOT_FOUND", "Private Service Connect endpoint not found" },
  PSC_SERVICE_ALREADY_EXISTS = { "409 CONFLICT", "Private Service Connect service already exists" },
  PRIVATELINK_SERVICE_NOT_FOUND = { "404 NOT_FOUND", "Private Service Connect service not found" },
  PRIVATE_LINK_ALREADY_EXISTS = { "409 CONFLICT", "Private Link already exists" },
  PRIVATE_LINK_PRINCIPAL_NOT_FOUND = { "404 NOT_FOUND", "Private Link principal not found" },
}

-- The error object of `typ` ({type, status, description}) and its additionalInfo; an unknown type
-- gets a generic 400 description, `info` (when given) replaces the catalog's additionalInfo.
function M.new(typ, info)
  local c = CATALOG[typ]
  local e = { type = typ, status = c and c[1] or "400 BAD_REQUEST",
              description = c and c[2] or ("The request failed: " .. typ:lower():gsub("_", " ")) }
  return e, info or (c and c[3])
end

return M
