using Microsoft.Extensions.Options;
using Peft.Training;
using TorchSharp;

namespace Peft.Hosting;

/// <summary>
/// Validates <see cref="PeftTrainingOptions"/> at host start-up. Every failure names the configuration key
/// (<c>PeftTraining:LearningRate</c>), the rule and the value given.
/// </summary>
public sealed class PeftTrainingOptionsValidator : IValidateOptions<PeftTrainingOptions>
{
    private readonly string _section;

    /// <summary>Creates the validator.</summary>
    /// <param name="sectionPath">The configuration section the options are bound from, used in messages.</param>
    public PeftTrainingOptionsValidator(string sectionPath) => _section = sectionPath;

    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, PeftTrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        var checkable = options;
        if (PeftTrainingOptions.OptimizerFactoryFor(options.Optimizer) is null)
        {
            failures.Add($"{_section}:Optimizer must be {string.Join(" or ", PeftTrainingOptions.OptimizerNames)} (not case-sensitive); got '{options.Optimizer}'.");
            checkable = options.Clone();
            checkable.Optimizer = AdamWOptimizer.KindName; // the other settings are still checked
        }

        try
        {
            checkable.ToTrainingOptions().Validate();
        }
        catch (ArgumentException ex)
        {
            string message = ex.Message;
            int paramNote = message.IndexOf(" (Parameter '", StringComparison.Ordinal);
            if (paramNote >= 0)
            {
                message = message[..paramNote];
            }

            failures.Add(message.Replace("TrainingOptions.", _section + ":", StringComparison.Ordinal));
        }

        if (string.IsNullOrWhiteSpace(options.OutputDirectory))
        {
            failures.Add($"{_section}:OutputDirectory is required: the directory for checkpoints, adapters and status.json.");
        }

        if (options.DataFile is { } data && !File.Exists(data))
        {
            failures.Add($"{_section}:DataFile: the file {Path.GetFullPath(data)} does not exist.");
        }

        if (options.CheckpointEvery < 1)
        {
            failures.Add($"{_section}:CheckpointEvery must be >= 1; got {options.CheckpointEvery}.");
        }

        if (options.KeepCheckpoints < 1)
        {
            failures.Add($"{_section}:KeepCheckpoints must be >= 1; got {options.KeepCheckpoints}.");
        }

        switch (options.Device?.ToLowerInvariant())
        {
            case "auto" or "cpu":
                break;
            case "cuda" when !torch.cuda.is_available():
                failures.Add($"{_section}:Device is cuda but CUDA is not available (build with -p:PeftTorchBackend=cuda on a machine with a GPU, or use cpu/auto).");
                break;
            case "cuda":
                break;
            default:
                failures.Add($"{_section}:Device must be auto, cpu or cuda; got '{options.Device}'.");
                break;
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
