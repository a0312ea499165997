package testsvc

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/pgcloudbackup/pgcloudbackup/internal/testenv"
)

// Azurite's fixed development account (documented by Microsoft; not a
// secret).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azurite is a running Azurite blob server.
type Azurite struct {
	Endpoint string // "http://127.0.0.1:port/devstoreaccount1": the blob service URL
	Host     string // "127.0.0.1:port"
	Dir      string

	port int
	p    *proc
}

// StartAzurite starts Azurite's blob service (node) in a temporary directory
// on a free loopback port and stops it when the test ends.
func StartAzurite(t testing.TB) *Azurite {
	t.Helper()
	bin := needBin(t, "azurite-blob")
	if _, err := exec.LookPath("node"); err != nil {
		testenv.Unavailable(t, "azurite-blob needs node: %v", err)
	}
	dir := t.TempDir()
	a := &Azurite{Dir: dir}
	if err := a.newPort(); err != nil {
		t.Fatalf("testsvc: %v", err)
	}
	client := &http.Client{}
	a.p = &proc{
		name: "azurite",
		bin:  bin,
		args: func() []string {
			return []string{
				"--blobHost", "127.0.0.1",
				"--blobPort", strconv.Itoa(a.port),
				"--location", filepath.Join(dir, "data"),
				"--silent",
				"--disableTelemetry",
				// Azure SDK releases outrun Azurite's list of API
				// versions; the blob operations we use are old.
				"--skipApiVersionCheck",
				"--loose",
			}
		},
		env:     baseEnv("AZURITE_"),
		dir:     dir,
		logPath: filepath.Join(dir, "azurite.log"),
		ready: func(ctx context.Context) error {
			// Any HTTP answer means the service listens; an
			// unauthenticated request gets 403.
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.Endpoint+"?comp=list", nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		},
	}
	launch(t, a.p, a.newPort)
	return a
}

func (a *Azurite) newPort() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	a.port = port
	a.Host = fmt.Sprintf("127.0.0.1:%d", port)
	a.Endpoint = "http://" + a.Host + "/" + AzuriteAccount
	return nil
}

// Stop stops the server (data and port are kept for Start).
func (a *Azurite) Stop(t testing.TB) { t.Helper(); a.p.stop() }

// Start starts a stopped server again on the same port with the same data.
func (a *Azurite) Start(t testing.TB) { t.Helper(); restart(t, a.p) }

// BucketURL returns the azblob URL for container and prefix ("" for none).
// gocloud's azureblob builds "http://<domain>/<account>" from protocol=http
// and a domain starting with 127.0.0.1 (localemu=true says the same
// explicitly); the account and key come from Env.
func (a *Azurite) BucketURL(containerName, prefix string) string {
	u := url.URL{Scheme: "azblob", Host: containerName}
	if prefix != "" {
		u.Path = "/" + prefix
	}
	q := url.Values{}
	q.Set("domain", a.Host)
	q.Set("protocol", "http")
	q.Set("localemu", "true")
	u.RawQuery = q.Encode()
	return u.String()
}

// Env returns the environment a child process needs: shared-key credentials
// for the development account, and no other Azure credential source.
func (a *Azurite) Env() []string {
	return []string{
		"AZURE_STORAGE_ACCOUNT=" + AzuriteAccount,
		"AZURE_STORAGE_KEY=" + AzuriteKey,
		"AZURE_STORAGE_SAS_TOKEN=",
		"AZURE_STORAGE_CONNECTION_STRING=",
		"AZURE_STORAGEBLOB_CONNECTIONSTRING=",
	}
}

// SetEnv sets Env in the test process (t.Setenv: the test cannot be
// parallel).
func (a *Azurite) SetEnv(t testing.TB) { t.Helper(); setEnv(t, a.Env()) }

// CreateContainer creates a blob container.
func (a *Azurite) CreateContainer(t testing.TB, name string) {
	t.Helper()
	cred, err := azblob.NewSharedKeyCredential(AzuriteAccount, AzuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := container.NewClientWithSharedKeyCredential(a.Endpoint+"/"+name, cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Create(ctx, nil); err != nil {
		t.Fatalf("testsvc: create container %s: %v", name, err)
	}
}
