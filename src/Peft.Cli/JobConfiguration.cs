using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Peft.Hosting;

namespace Peft.Cli;

/// <summary>
/// How <c>peft train</c> and <c>peft evaluate</c> read settings: the <c>--config</c> JSON file, then environment
/// variables (<c>PeftTraining__TotalSteps</c>), then <c>--Section:Key=value</c> overrides after the command's options.
/// Relative paths in the settings (<c>OutputDirectory</c>, <c>DataFile</c>, <c>Job:BaseWeights</c>) are relative to
/// the config file's directory.
/// </summary>
internal static class JobConfiguration
{
    public static string CheckConfigFile(string path)
    {
        if (!File.Exists(path))
        {
            throw CliException.Usage($"{path}: the configuration file does not exist.");
        }

        return Path.GetFullPath(path);
    }

    public static void AddSources(IConfigurationBuilder builder, string configPath, IEnumerable<string> overrides)
    {
        builder.AddJsonFile(configPath, optional: false, reloadOnChange: false)
            .AddEnvironmentVariables()
            .AddCommandLine(overrides.ToArray());
    }

    /// <summary>Registers both option classes: bound strictly (unknown keys fail), paths made absolute, validated at start.</summary>
    public static void AddOptions(IServiceCollection services, IConfiguration configuration, string configPath)
    {
        string baseDirectory = Path.GetDirectoryName(configPath)!;
        services.PostConfigure<PeftTrainingOptions>(o =>
        {
            if (!string.IsNullOrWhiteSpace(o.OutputDirectory)) o.OutputDirectory = Path.GetFullPath(o.OutputDirectory, baseDirectory);
            if (!string.IsNullOrWhiteSpace(o.DataFile)) o.DataFile = Path.GetFullPath(o.DataFile, baseDirectory);
        });
        services.AddOptions<CsvJobOptions>()
            .Bind(configuration.GetSection(CsvJobOptions.SectionName), binder => binder.ErrorOnUnknownConfiguration = true)
            .PostConfigure(o =>
            {
                if (!string.IsNullOrWhiteSpace(o.BaseWeights)) o.BaseWeights = Path.GetFullPath(o.BaseWeights, baseDirectory);
            })
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<CsvJobOptions>, CsvJobOptionsValidator>();
    }

    /// <summary>Turns a configuration error (a bad value, an unknown key, a failed validation) into a usage error naming the setting.</summary>
    public static CliException InvalidConfiguration(string configPath, Exception ex) =>
        CliException.Usage($"{configPath}: invalid configuration: {ex.Message}");
}
