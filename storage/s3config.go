package storage

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/pgcloudbackup/pgcloudbackup/internal/failure"
)

// loadAWSConfig is gocloud.dev/aws V2ConfigFromURLParams (v0.47.0: same
// parameters, same meaning) with extra load options. gocloud's function
// gives no way to pass the logger before the credential chain is built, so
// the chain's clients (the EC2 instance-metadata client, STS) kept the SDK's
// default logger, plain text on stderr ("falling back to IMDSv1"), whatever
// Logger was set on the config afterwards.
//
// q holds only the AWS config parameters: region, endpoint,
// hostname_immutable, profile, role, anonymous, dualstack, fips,
// request_checksum_calculation, response_checksum_validation and awssdk
// (ignored). rate_limiter_capacity is the caller's (it builds the retryer).
// Bad values are usage errors.
func loadAWSConfig(ctx context.Context, q url.Values, extra ...func(*config.LoadOptions) error) (aws.Config, error) {
	var endpoint, roleARN string
	var hostnameImmutable bool
	var opts []func(*config.LoadOptions) error
	parseBool := func(k, v string) (bool, error) {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, usageErr("s3 bucket URL parameter %s=%q is not true or false", k, v)
		}
		return b, nil
	}
	for k, vs := range q {
		v := vs[0]
		switch k {
		case "region":
			opts = append(opts, config.WithRegion(v))
		case "endpoint":
			endpoint = v
		case "hostname_immutable":
			b, err := parseBool(k, v)
			if err != nil {
				return aws.Config{}, err
			}
			hostnameImmutable = b
		case "profile":
			opts = append(opts, config.WithSharedConfigProfile(v))
		case "dualstack", "fips", "anonymous":
			b, err := parseBool(k, v)
			if err != nil {
				return aws.Config{}, err
			}
			switch {
			case !b:
			case k == "dualstack":
				opts = append(opts, config.WithUseDualStackEndpoint(aws.DualStackEndpointStateEnabled))
			case k == "fips":
				opts = append(opts, config.WithUseFIPSEndpoint(aws.FIPSEndpointStateEnabled))
			default:
				opts = append(opts, config.WithCredentialsProvider(aws.AnonymousCredentials{}))
			}
		case "role":
			if !strings.HasPrefix(v, "arn:") {
				return aws.Config{}, usageErr("s3 bucket URL parameter role=%q is not an ARN (arn:...)", v)
			}
			roleARN = v
		case "request_checksum_calculation", "response_checksum_validation":
			supported := strings.EqualFold(v, "when_supported")
			if !supported && !strings.EqualFold(v, "when_required") {
				return aws.Config{}, usageErr("s3 bucket URL parameter %s=%q: want when_supported or when_required", k, v)
			}
			if k == "request_checksum_calculation" {
				m := aws.RequestChecksumCalculationWhenRequired
				if supported {
					m = aws.RequestChecksumCalculationWhenSupported
				}
				opts = append(opts, config.WithRequestChecksumCalculation(m))
			} else {
				m := aws.ResponseChecksumValidationWhenRequired
				if supported {
					m = aws.ResponseChecksumValidationWhenSupported
				}
				opts = append(opts, config.WithResponseChecksumValidation(m))
			}
		case "awssdk":
		default:
			return aws.Config{}, usageErr("s3 bucket URL parameter %s is not known", k)
		}
	}
	opts = append(opts, extra...)
	if roleARN != "" {
		base, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return aws.Config{}, err
		}
		if base.Region == "" {
			return aws.Config{}, &failure.Error{Kind: failure.Usage,
				Err:  fmt.Errorf("no AWS region to assume role %s in", roleARN),
				Hint: "add region=REGION to the bucket URL or set AWS_REGION"}
		}
		// Unlike gocloud, the other parameters (profile, fips, checksum
		// modes) still apply to the config that uses the role.
		opts = append(opts, config.WithCredentialsProvider(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(base), roleARN)),
			config.WithRegion(base.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, err
	}
	if endpoint != "" {
		// As gocloud: a fixed endpoint for every service, signing in the
		// configured region.
		cfg.EndpointResolverWithOptions = aws.EndpointResolverWithOptionsFunc(
			func(service, region string, _ ...any) (aws.Endpoint, error) {
				return aws.Endpoint{PartitionID: "aws", URL: endpoint, SigningRegion: region, HostnameImmutable: hostnameImmutable}, nil
			})
	}
	return cfg, nil
}
