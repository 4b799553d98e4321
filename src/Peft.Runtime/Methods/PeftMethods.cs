using Peft.Serialization;

namespace Peft;

/// <summary>
/// The registry of methods: one line per method below (and one in the generator's <c>MethodCatalogue</c>). Everything that
/// needs a method by name or by file format asks here, so adding a method touches its folders and these lines only
/// (docs/ARCHITECTURE.md, "Adding a method").
/// </summary>
public static class PeftMethods
{
    private static readonly PeftMethod[] s_all =
    {
        LoRAMethod.Instance,
        KroneckerMethod.Instance,
        PromptTuningMethod.Instance,
        DoRAMethod.Instance,
        IA3Method.Instance,
        LNTuningMethod.Instance,
        LoHaMethod.Instance,
        HiRAMethod.Instance,
        VeRAMethod.Instance,
        BitFitMethod.Instance,
        SSFMethod.Instance,
        RandLoRAMethod.Instance,
        VBLoRAMethod.Instance,
        SVFitMethod.Instance,
        LoLDUMethod.Instance,
        DePTMethod.Instance,
        PTuningMethod.Instance,
        KaSAMethod.Instance,
        SoKAMethod.Instance,
    };

    /// <summary>Every registered method, in registration order.</summary>
    public static IReadOnlyList<PeftMethod> All => s_all;

    /// <summary>The method named <paramref name="name"/> (<see cref="PeftMethod.Name"/>, as generated descriptors record it).</summary>
    /// <param name="name">The method's name.</param>
    /// <returns>The method.</returns>
    /// <exception cref="PeftConfigurationException">No method has that name.</exception>
    public static PeftMethod ByName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return s_all.FirstOrDefault(m => m.Name == name)
            ?? throw new PeftConfigurationException($"No PEFT method is named '{name}'. Methods: {string.Join(", ", s_all.Select(m => m.Name))}.");
    }

    /// <summary>
    /// The method that reads <paramref name="config"/>: among the registered methods whose <see cref="PeftMethod.Reads"/>
    /// accepts it, a variant wins over the method it varies (DoRA over LoRA).
    /// </summary>
    /// <param name="config">The config.</param>
    /// <returns>The method.</returns>
    /// <exception cref="AdapterFormatException">No registered method reads it.</exception>
    public static PeftMethod ForConfig(AdapterConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var readers = s_all.Where(m => m.Reads(config)).ToList();
        if (readers.Count == 0)
        {
            throw new AdapterFormatException(
                $"{config.Source}: peft_type \"{config.PeftType}\" is not supported (supported: {string.Join(", ", s_all.Select(m => m.PeftType).Distinct())}).");
        }

        var variants = readers.Where(m => m.VariantOf is { } baseMethod && readers.Contains(baseMethod)).ToList();
        return variants.Count > 0 ? variants[0] : readers[0];
    }
}
