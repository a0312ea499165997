// Package validate decodes Kubernetes manifests strictly into the upstream
// API types (an unknown or misspelt field is an error, as with kubectl's
// server-side field validation) and checks the references between them.
package validate

import (
	"bytes"
	"fmt"
	"path"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Objects is what a manifest file holds, by kind.
type Objects struct {
	Secrets    map[string]*corev1.Secret
	ConfigMaps map[string]*corev1.ConfigMap
	CronJobs   []*batchv1.CronJob
}

// Decode splits a multi-document YAML file and decodes each document
// strictly into its type.
func Decode(data []byte) (*Objects, error) {
	o := &Objects{Secrets: map[string]*corev1.Secret{}, ConfigMaps: map[string]*corev1.ConfigMap{}}
	for i, doc := range splitDocs(data) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		var err error
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Secret":
			var s corev1.Secret
			err = yaml.UnmarshalStrict(doc, &s)
			o.Secrets[s.Name] = &s
		case "v1 ConfigMap":
			var c corev1.ConfigMap
			err = yaml.UnmarshalStrict(doc, &c)
			o.ConfigMaps[c.Name] = &c
		case "batch/v1 CronJob":
			var c batchv1.CronJob
			err = yaml.UnmarshalStrict(doc, &c)
			o.CronJobs = append(o.CronJobs, &c)
		default:
			err = fmt.Errorf("unexpected apiVersion/kind %q %q", tm.APIVersion, tm.Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i+1, tm.Kind, err)
		}
	}
	return o, nil
}

func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(d []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(d, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l...)
			out = append(out, '\n')
		}
	}
	return out
}

// Check applies the rules the README documents for our CronJobs, and the
// references Kubernetes would only find when a pod starts.
func (o *Objects) Check() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(o.CronJobs) == 0 {
		add("no CronJob")
	}
	for _, cj := range o.CronJobs {
		n := cj.Name
		if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
			add("%s: concurrencyPolicy is %q, want Forbid (two backups must never overlap)", n, cj.Spec.ConcurrencyPolicy)
		}
		if f := strings.Fields(cj.Spec.Schedule); len(f) != 5 {
			add("%s: schedule %q is not a 5-field cron expression", n, cj.Spec.Schedule)
		}
		pod := cj.Spec.JobTemplate.Spec.Template.Spec
		if pod.RestartPolicy != corev1.RestartPolicyNever && pod.RestartPolicy != corev1.RestartPolicyOnFailure {
			add("%s: restartPolicy %q is not allowed in a Job", n, pod.RestartPolicy)
		}
		if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			add("%s: pod does not set runAsNonRoot", n)
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range pod.Volumes {
			volumes[v.Name] = v
			if cm := v.ConfigMap; cm != nil {
				m, ok := o.ConfigMaps[cm.Name]
				if !ok {
					add("%s: volume %s uses ConfigMap %s, not in the file", n, v.Name, cm.Name)
					continue
				}
				for _, it := range cm.Items {
					if _, ok := m.Data[it.Key]; !ok {
						add("%s: volume %s wants key %s of ConfigMap %s, which has none", n, v.Name, it.Key, cm.Name)
					}
				}
			}
		}
		all := append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...)
		for _, c := range all {
			errs = append(errs, o.checkContainer(n, c, cj.Namespace, volumes)...)
		}
	}
	return errs
}

func (o *Objects) checkContainer(job string, c corev1.Container, ns string, volumes map[string]corev1.Volume) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s/%s: "+format, append([]any{job, c.Name}, args...)...))
	}
	if i := strings.LastIndex(c.Image, ":"); i < 0 || strings.HasSuffix(c.Image, ":latest") || strings.Contains(c.Image[i:], "/") {
		add("image %q is not pinned to a version", c.Image)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		add("securityContext must set readOnlyRootFilesystem and forbid privilege escalation")
	}
	bucket := false
	for _, ef := range c.EnvFrom {
		if ef.SecretRef == nil {
			continue
		}
		s, ok := o.Secrets[ef.SecretRef.Name]
		if !ok {
			add("envFrom Secret %s is not in the file", ef.SecretRef.Name)
			continue
		}
		if s.Namespace != ns {
			add("Secret %s is in namespace %q, the CronJob in %q", s.Name, s.Namespace, ns)
		}
		if _, ok := s.StringData["PGCLOUDBACKUP_BUCKET"]; ok {
			bucket = true
		}
		if _, ok := s.Data["PGCLOUDBACKUP_BUCKET"]; ok {
			bucket = true
		}
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		if _, ok := volumes[m.Name]; !ok {
			add("mounts volume %s, which the pod does not define", m.Name)
		}
		mounts[m.MountPath] = m.Name
	}
	for _, e := range c.Env {
		switch {
		case e.Name == "PGCLOUDBACKUP_BUCKET":
			bucket = true
		case e.Name == "AWS_SECRET_ACCESS_KEY" && e.Value != "":
			add("AWS_SECRET_ACCESS_KEY given in clear; take it from the Secret")
		case e.Name == "AWS_CA_BUNDLE":
			dir, file := path.Split(e.Value)
			vol, ok := mounts[strings.TrimSuffix(dir, "/")]
			if !ok {
				add("AWS_CA_BUNDLE %s is not under a volume mount", e.Value)
				continue
			}
			cm := volumes[vol].ConfigMap
			if cm == nil {
				add("AWS_CA_BUNDLE %s is not on a ConfigMap volume", e.Value)
				continue
			}
			if !configMapHasFile(o.ConfigMaps[cm.Name], cm, file) {
				add("AWS_CA_BUNDLE %s: ConfigMap %s provides no file %s", e.Value, cm.Name, file)
			}
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			r := e.ValueFrom.SecretKeyRef
			s, ok := o.Secrets[r.Name]
			if !ok {
				add("env %s: Secret %s is not in the file", e.Name, r.Name)
			} else if _, ok := s.StringData[r.Key]; !ok {
				if _, ok := s.Data[r.Key]; !ok {
					add("env %s: Secret %s has no key %s", e.Name, r.Name, r.Key)
				}
			}
		}
	}
	if !bucket {
		add("no PGCLOUDBACKUP_BUCKET (from the Secret or env)")
	}
	return errs
}

func configMapHasFile(m *corev1.ConfigMap, v *corev1.ConfigMapVolumeSource, file string) bool {
	if m == nil {
		return false
	}
	if len(v.Items) == 0 {
		_, ok := m.Data[file]
		return ok
	}
	for _, it := range v.Items {
		if it.Path == file {
			_, ok := m.Data[it.Key]
			return ok
		}
	}
	return false
}
