using System.CommandLine;
using System.Globalization;

namespace Peft.Cli;

/// <summary>
/// <c>peft merge --base base.safetensors --adapter DIR --output merged.safetensors [--adapter-name NAME]</c>, or with a
/// Hugging Face model directory as <c>--base</c> (single file or shards) and a new directory as <c>--output</c>.
/// </summary>
internal static class MergeCommand
{
    public static Command Create()
    {
        var baseOption = new Option<string>("--base") { Description = "The base weights: a safetensors file (state-dict names such as fc1.weight), or a Hugging Face model directory (config.json with model.safetensors, or shards and model.safetensors.index.json).", Required = true };
        var adapterOption = new Option<string>("--adapter") { Description = "The adapter directory (adapter_config.json + adapter_model.safetensors), or a directory of named adapters with --adapter-name, or a sparse delta file (SPT, ID3: format peft-dotnet-sparse-delta) added into a base weights file.", Required = true };
        var outputOption = new Option<string>("--output", "-o") { Description = "For a base file, the merged safetensors file (written atomically; may be the base file). For a model directory, a new or empty directory that receives the merged model in the same layout (written whole, then renamed into place).", Required = true };
        var nameOption = new Option<string?>("--adapter-name") { Description = "Use the adapter in the subdirectory of this name (PEFT's layout for named adapters; the hosting service writes adapters/NAME)." };
        var allowOption = new Option<bool>("--allow-already-merged") { Description = "Merge even when the base's metadata records this adapter as merged already (its update would be applied twice)." };
        var command = new Command("merge", "Merge an adapter into base weights at the file level with its method's merge (LoRA, LoKr, LoHa, VeRA, RandLoRA, VB-LoRA: W' = W + ΔW; IA3, DoRA, HiRA (W ⊙ (1 + BA)), LayerNorm tuning: their own rule; modules_to_save modules replace the base's), keeping dtypes and every other tensor.")
        {
            baseOption, adapterOption, outputOption, nameOption, allowOption,
        };
        command.SetAction(parse =>
        {
            string basePath = parse.GetRequiredValue(baseOption);
            string output = parse.GetRequiredValue(outputOption);
            bool baseIsDirectory = Directory.Exists(basePath);
            if (!baseIsDirectory && !File.Exists(basePath))
            {
                throw CliException.Usage($"{basePath}: the base weights file or model directory does not exist.");
            }

            if (baseIsDirectory)
            {
                ModelDirectoryOutput.EnsureUsable(output);
            }
            else if (Directory.Exists(output))
            {
                throw CliException.Usage($"{output}: --output is a directory; the base is a file, so give the merged file's path.");
            }

            string adapterArgument = parse.GetRequiredValue(adapterOption);
            if (SparseDeltaMerge.IsSparseDelta(adapterArgument))
            {
                var (names, entries) = SparseDeltaMerge.Merge(basePath, adapterArgument, output);
                foreach (var name in names)
                {
                    parse.InvocationConfiguration.Output.WriteLine($"merged {name} (sparse delta)");
                }

                parse.InvocationConfiguration.Output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {Path.GetFullPath(output)} ({entries} entries of {names.Count} tensor(s) from the sparse delta {adapterArgument})"));
                return ExitCodes.Success;
            }

            if (LoFiTCli.IsLoFiT(adapterArgument))
            {
                var changed = LoFiTCli.Merge(basePath, adapterArgument, output);
                foreach (var name in changed)
                {
                    parse.InvocationConfiguration.Output.WriteLine($"merged {name} (LoFiT)");
                }

                parse.InvocationConfiguration.Output.WriteLine(LoFiTCli.Summary(output, adapterArgument, changed.Count));
                return ExitCodes.Success;
            }

            if (Directory.Exists(adapterArgument) && MeftInspect.IsMeft(adapterArgument)) throw MeftInspect.MergeRefusal(adapterArgument);
            string adapter = AdapterDirectory.Resolve(adapterArgument, parse.GetValue(nameOption));
            var result = AdapterMerger.Merge(basePath, adapter, output, parse.GetValue(nameOption) ?? AdapterNames.Default, parse.GetValue(allowOption));
            var writer = parse.InvocationConfiguration.Output;
            foreach (var module in result.Merged)
            {
                string settings = string.Join(" ", module.Settings.Where(s => s.Value is not null).Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.Name} {Format(s.Value)}")));
                writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"merged {module.WeightKey} {module.DType} [{string.Join(", ", module.Shape)}] {settings}"));
            }

            foreach (var tensor in result.Replaced)
            {
                writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"replaced {tensor.Key} {tensor.DType} [{string.Join(", ", tensor.Shape)}] from {tensor.AdapterKey} (modules_to_save)"));
            }

            foreach (var file in result.Copied)
            {
                writer.WriteLine($"copied {file}");
            }

            foreach (var entry in result.Skipped)
            {
                writer.WriteLine($"skipped {entry}");
            }

            string replacedNote = result.Replaced.Count > 0 ? $", {result.Replaced.Count} tensor(s) replaced from modules_to_save" : string.Empty;
            string files = baseIsDirectory ? $", weights {string.Join(", ", result.WeightFiles)}" : string.Empty;
            writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {Path.GetFullPath(output)} ({result.Merged.Count} module(s) merged from {adapter}{replacedNote}{files})"));
            return ExitCodes.Success;
        });
        return command;
    }

    private static string Format(object? value) => value switch
    {
        double d => d.ToString("G6", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value?.ToString() ?? string.Empty,
    };
}
