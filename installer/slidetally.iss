; Inno Setup script for Windows. Build the bundle first on Windows:
;   py -m venv .venv-build && .venv-build\Scripts\pip install -e .[installer]
;   .venv-build\Scripts\pyinstaller --noconfirm installer\slidetally.spec --distpath dist
; then compile this script with Inno Setup 6 (iscc installer\slidetally.iss).
; Installs per user by default (no admin rights needed), as lab workstations often require.

#define AppName "SlideTally"
#define AppVersion "0.1.0"

[Setup]
AppId={{6B1E7E0B-3C55-4E1B-9E59-7D3C2B8A41F2}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=SlideTally developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
OutputDir=..\dist
OutputBaseFilename=SlideTally-{#AppVersion}-setup
Compression=lzma2
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
UninstallDisplayIcon={app}\slidetally.exe
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"

[Files]
Source: "..\dist\slidetally\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\slidetally.exe"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\slidetally.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\slidetally.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
