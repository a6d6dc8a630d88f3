{{/* Names and labels shared by every template. */}}

{{- define "lora-controller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release name, plus the chart name unless the release name already contains it. */}}
{{- define "lora-controller.fullname" -}}
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

{{- define "lora-controller.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lora-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lora-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lora-controller.labels" -}}
helm.sh/chart: {{ include "lora-controller.chart" . }}
{{ include "lora-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "lora-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lora-controller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lora-controller.leaseName" -}}
{{- default (include "lora-controller.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "lora-controller.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The adapter store's claim: the existing one, else the new one, else none (emptyDir). */}}
{{- define "lora-controller.adapterStoreClaim" -}}
{{- if .Values.adapterStore.existingClaim }}
{{- .Values.adapterStore.existingClaim }}
{{- else if .Values.adapterStore.newClaim.create }}
{{- default (printf "%s-adapter-store" (include "lora-controller.fullname" .)) .Values.adapterStore.newClaim.name }}
{{- end }}
{{- end }}

{{/*
The rules for LoraAdapters, Pods, Secrets and Events: exactly what the controller calls.
- loraadapters: list+watch (informers), patch (a JSON patch adds/removes its finalizer);
- loraadapters/status: patch (server-side apply of the status);
- pods: list+watch (one informer per namespace, by the labels its podSelectors share);
- secrets: list+watch (one informer per namespace where a LoraAdapter has a credentialsSecretRef);
- events.k8s.io events: create, patch (a repeated event's series count).
*/}}
{{- define "lora-controller.watchRules" -}}
- apiGroups: ["production-stack.vllm-project"]
  resources: ["loraadapters"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["production-stack.vllm-project"]
  resources: ["loraadapters/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
