namespace Peft;

/// <summary>Rules shared by every adapter container for adapter names.</summary>
internal static class AdapterNameRules
{
    /// <summary>Throws when <paramref name="adapterName"/> cannot name an adapter child module.</summary>
    public static void Validate(string? adapterName, string? memberName, params string[] reserved)
    {
        string where = Describe(memberName);
        if (string.IsNullOrEmpty(adapterName))
        {
            throw new PeftConfigurationException(
                $"An adapter{where} has an empty name. Give it a non-empty Name (PEFT's default is \"{AdapterNames.Default}\").",
                memberName, adapterName);
        }

        if (adapterName.Contains('.', StringComparison.Ordinal))
        {
            throw new PeftConfigurationException(
                $"Adapter name '{adapterName}'{where} contains '.', which would break state-dict keys. Use a name without dots, e.g. '{adapterName.Replace('.', '_')}'.",
                memberName, adapterName);
        }

        foreach (var r in reserved)
        {
            if (string.Equals(adapterName, r, StringComparison.Ordinal))
            {
                throw new PeftConfigurationException(
                    $"Adapter name '{adapterName}'{where} is reserved: the layer registers its base parameter under that name. Choose another name.",
                    memberName, adapterName);
            }
        }
    }

    /// <summary>" on member 'x'" or an empty string.</summary>
    public static string Describe(string? memberName) =>
        string.IsNullOrEmpty(memberName) ? string.Empty : $" on member '{memberName}'";
}
