{{/*
Names and labels, in the usual Helm shape.
*/}}
{{- define "gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gateway.labels" -}}
helm.sh/chart: {{ include "gateway.chart" . }}
{{ include "gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: url-signing-gateway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The policy ConfigMap: the chart's, or the one the user manages.
*/}}
{{- define "gateway.policyConfigMapName" -}}
{{- .Values.policy.existingConfigMap | default (printf "%s-policy" (include "gateway.fullname" .)) }}
{{- end }}

{{/*
Whether the chart renders its own Secret: only without existingSecret, and only with something in it.
*/}}
{{- define "gateway.createSecret" -}}
{{- if and (not .Values.secrets.existingSecret) (or .Values.secrets.signingKey .Values.secrets.redisUrl .Values.secrets.vendorKeys .Values.secrets.sessionKeys .Values.secrets.oidcClientSecrets) -}}
true
{{- end }}
{{- end }}

{{/*
The Secret the pods read, if any.
*/}}
{{- define "gateway.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if include "gateway.createSecret" . }}
{{- include "gateway.fullname" . }}
{{- end }}
{{- end }}

{{/*
GATEWAY_PUBLIC_URL: explicit, else derived from the first ingress host.
*/}}
{{- define "gateway.publicUrl" -}}
{{- if .Values.gateway.publicUrl }}
{{- .Values.gateway.publicUrl | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- if .Values.ingress.tls }}
{{- printf "https://%s" $host }}
{{- else }}
{{- printf "http://%s" $host }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gateway.redisName" -}}
{{- printf "%s-redis" (include "gateway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gateway.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "gateway.name" . }}-redis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Refuse contradictory values at render time, with a message that says what to change.
*/}}
{{- define "gateway.validate" -}}
{{- if and .Values.secrets.existingSecret (or .Values.secrets.signingKey .Values.secrets.redisUrl .Values.secrets.vendorKeys .Values.secrets.sessionKeys .Values.secrets.oidcClientSecrets) }}
{{- fail "secrets.existingSecret is set: put GATEWAY_SIGNING_KEY, GATEWAY_REDIS_URL, GATEWAY_SESSION_KEYS, vendor keys and OIDC client secrets in that Secret, and leave secrets.signingKey, secrets.redisUrl, secrets.vendorKeys, secrets.sessionKeys and secrets.oidcClientSecrets empty" }}
{{- end }}
{{- if and .Values.redis.enabled .Values.secrets.redisUrl }}
{{- fail "redis.enabled and secrets.redisUrl are both set: use the bundled Redis or your own, not both" }}
{{- end }}
{{- with .Values.externalRedis }}
{{- if and .url (or $.Values.redis.enabled $.Values.secrets.redisUrl) }}
{{- fail "externalRedis.url is set together with redis.enabled or secrets.redisUrl: choose one Redis" }}
{{- end }}
{{- if and (not .url) (or .username .passwordSecret.name .sentinelPasswordSecret.name .tls.caSecret.name .iam.cache) }}
{{- fail "externalRedis settings are set but externalRedis.url is empty" }}
{{- end }}
{{- if and (eq .auth "elasticache-iam") (not (and .username .iam.cache)) }}
{{- fail "externalRedis.auth=elasticache-iam needs externalRedis.username and externalRedis.iam.cache" }}
{{- end }}
{{- if and (ne .auth "password") .passwordSecret.name }}
{{- fail "externalRedis.passwordSecret is for auth=password; IAM authentication makes its own token" }}
{{- end }}
{{- end }}
{{- if and .Values.secrets.signingKey (lt (len .Values.secrets.signingKey) 32) }}
{{- fail "secrets.signingKey must be at least 32 characters (the gateway refuses shorter keys)" }}
{{- end }}
{{- if not .Values.policy.existingConfigMap }}
{{- $policy := .Values.policy.content | fromYaml }}
{{- if hasKey $policy "Error" }}
{{- fail (printf "policy.content is not valid YAML: %s (validate it with `gateway check-config`)" $policy.Error) }}
{{- end }}
{{- if not (hasKey $policy "version") }}
{{- fail "policy.content has no `version`; is it a gateway policy file? (validate it with `gateway check-config`)" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Whether the external Redis URL names Sentinels (their port needs an egress rule of its own).
*/}}
{{- define "gateway.redisSentinel" -}}
{{- if or (hasPrefix "redis+sentinel://" .Values.externalRedis.url) (hasPrefix "rediss+sentinel://" .Values.externalRedis.url) -}}
true
{{- end }}
{{- end }}

{{/*
GATEWAY_ALLOWED_HOSTS: gateway.allowedHosts, or the public URL's host and the Service's in-cluster
names (any other Host is refused: DNS rebinding protection).
*/}}
{{- define "gateway.allowedHosts" -}}
{{- if .Values.gateway.allowedHosts }}
{{- join "," .Values.gateway.allowedHosts }}
{{- else }}
{{- $svc := include "gateway.fullname" . }}
{{- $names := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) }}
{{- with include "gateway.publicUrl" . }}
{{- $names = prepend $names (regexReplaceAll "^https?://([^/]+).*$" . "${1}") }}
{{- end }}
{{- join "," $names }}
{{- end }}
{{- end }}
